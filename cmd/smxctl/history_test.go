package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/replay"
	"github.com/smx-mta/smx/replay/replaytest"
)

// historyQueue prepares a queue directory whose event log holds a small
// history (see testdata/history for what the commands make of it) and a
// snapshot, and returns the smx.conf that points at it.
func historyQueue(t *testing.T) (confPath, queueDir string) {
	t.Helper()
	queueDir = t.TempDir()
	confPath = filepath.Join(t.TempDir(), "smx.conf")
	require.NoError(t, os.WriteFile(confPath, []byte("queue_directory = "+queueDir+";\n"), 0o644))

	b := replaytest.New()
	b.Receive("S0000000000000000101", "alice@example.org", 2048, "bob@a.example")
	b.Resolve("S0000000000000000101", 0, "mx.a.example", "192.0.2.1")
	b.Attempt("S0000000000000000101", "mx.a.example", "192.0.2.1", 250, 0)
	b.Deliver("S0000000000000000101", 0, "mx.a.example", "192.0.2.1")
	b.Release("S0000000000000000101")
	b.Advance(time.Minute)
	b.Receive("S0000000000000000201", "carol@example.org", 10000, "dave@b.example", "erin@c.example")
	b.Resolve("S0000000000000000201", 0, "mx.b.example", "192.0.2.2")
	b.Resolve("S0000000000000000201", 1, "mx.c.example", "192.0.2.3")
	b.Attempt("S0000000000000000201", "mx.b.example", "192.0.2.2", 550, 0)
	b.Fail("S0000000000000000201", 0, "192.0.2.2", "550 5.1.1 <dave@b.example>: Recipient address rejected: User unknown")
	b.Attempt("S0000000000000000201", "mx.c.example", "192.0.2.3", 421, 1)
	b.Defer("S0000000000000000201", 1, "192.0.2.3", 30*time.Minute, "421 4.7.0 mx.c.example Service not available")
	b.Bounce("S0000000000000000201", "S0000000000000000301", "carol@example.org", 0)
	b.Advance(2 * time.Minute)
	b.Receive("S0000000000000000401", "frank@example.org", 500, "gina@d.example")
	b.Resolve("S0000000000000000401", 0, "mx.d.example", "192.0.2.4")
	b.Start("S0000000000000000401", "mx.d.example", "192.0.2.4", 0)

	ctx := context.Background()
	l, err := log.Open(filepath.Join(queueDir, "eventlog"), log.Options{})
	require.NoError(t, err)
	require.NoError(t, b.WriteTo(ctx, l))
	r, err := replay.Rebuild(ctx, replay.FromLog(l), replay.Point{Seq: 12})
	require.NoError(t, err)
	require.NoError(t, replay.SaveSnapshot(l, r.Queue()))
	b2 := replaytest.New()
	b2.Now = b.Now.Add(5 * time.Minute)
	b2.Add("S0000000000000000201", log.NoRcpt, &log.Hold{Operator: log.Operator{User: "postmaster", Reason: "customer asked"}})
	last, err := l.Append(ctx, b2.Events()...)
	require.NoError(t, err)
	require.Equal(t, uint64(len(b.Events())+1), last)
	require.NoError(t, l.Close())
	return confPath, queueDir
}

// brokenQueue prepares a queue directory whose log breaks the rules: a
// recipient delivered twice, and a body released while still needed.
func brokenQueue(t *testing.T) (confPath, queueDir string) {
	t.Helper()
	queueDir = t.TempDir()
	confPath = filepath.Join(t.TempDir(), "smx.conf")
	require.NoError(t, os.WriteFile(confPath, []byte("queue_directory = "+queueDir+";\n"), 0o644))
	b := replaytest.New()
	b.Receive("A", "alice@example.org", 100, "x@a.example", "y@a.example")
	b.Deliver("A", 0, "mx.a.example", "192.0.2.1")
	b.Deliver("A", 0, "mx.a.example", "192.0.2.1")
	b.Release("A")
	l, err := log.Open(filepath.Join(queueDir, "eventlog"), log.Options{})
	require.NoError(t, err)
	require.NoError(t, b.WriteTo(context.Background(), l))
	require.NoError(t, l.Close())
	return confPath, queueDir
}

// buildSmxctl compiles the real binary once for the test.
func buildSmxctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "smxctl")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// TestHistoryCommands runs the real smxctl binary on a prepared queue
// directory: each "run" line of testdata/history is a command line, the
// expected output below it is stdout, then stderr and the exit status when
// the command fails.
func TestHistoryCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSmxctl(t)
	confPath, queueDir := historyQueue(t)
	brokenConf, brokenDir := brokenQueue(t)
	datadriven.RunTest(t, "testdata/history", func(t *testing.T, td *datadriven.TestData) string {
		if td.Cmd != "run" {
			t.Fatalf("unknown command %q", td.Cmd)
		}
		conf := confPath
		if td.HasArg("broken") {
			conf = brokenConf
		}
		args := append([]string{"-f", conf}, strings.Fields(td.Input)...)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "TZ=UTC")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		out := stdout.String()
		var exitErr *exec.ExitError
		switch {
		case errors.As(err, &exitErr):
			out += fmt.Sprintf("stderr: %sexit status %d\n", stderr.String(), exitErr.ExitCode())
		case err != nil:
			t.Fatal(err)
		}
		out = strings.ReplaceAll(out, brokenDir, "$BROKEN")
		return strings.ReplaceAll(out, queueDir, "$QUEUE")
	})
	// Reading never wrote: the log is still the writer's, the copies the
	// readers made are gone.
	entries, err := os.ReadDir(filepath.Join(queueDir, "eventlog", "readers"))
	if err == nil {
		require.Empty(t, entries)
	}
}

// TestReplayFollow follows the log while events are appended, driving the
// polls through a channel instead of a ticker.
func TestReplayFollow(t *testing.T) {
	confPath, queueDir := historyQueue(t)
	ticks := make(chan struct{})
	wait := func(ctx context.Context) error {
		select {
		case <-ticks:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// The registered replay command, with the ticker replaced.
	root := newRootCmd()
	for _, c := range root.Commands() {
		if c.Name() == "replay" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(newReplayCmdWith(&globalFlags{configFile: confPath}, wait))
	out := &syncBuffer{}
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs([]string{"-f", confPath, "replay", "--follow", "--from", "18", "--type", "RcptDelivered,Hold"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	waitFor := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !strings.Contains(out.String(), want) {
			select {
			case <-deadline:
				t.Fatalf("waiting for %q; output so far:\n%s", want, out.String())
			case err := <-done:
				t.Fatalf("replay --follow ended: %v\n%s", err, out.String())
			case ticks <- struct{}{}:
			}
		}
	}
	waitFor("Hold S0000000000000000201")

	l, err := log.Open(filepath.Join(queueDir, "eventlog"), log.Options{})
	require.NoError(t, err)
	b := replaytest.New()
	b.Deliver("S0000000000000000401", 0, "mx.d.example", "192.0.2.4")
	_, err = l.Append(context.Background(), b.Events()...)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	waitFor("RcptDelivered S0000000000000000401:0 <gina@d.example>")

	cancel()
	require.NoError(t, <-done)
	require.Equal(t, 2, strings.Count(out.String(), "\n"), out.String())
}

// syncBuffer is a bytes.Buffer the test reads while the command writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
