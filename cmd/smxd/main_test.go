package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// execute runs smxd's command tree in-process with args.
func execute(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := execute(t, context.Background(), "version")
	require.NoError(t, err)
	require.Regexp(t, `^smxd \S+ \(go1\.\d+`, out)
}

func TestConfigCheckSeedExamples(t *testing.T) {
	files, err := filepath.Glob("conf/testdata/seed*.conf")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	files = append(files, "smx.conf")
	for _, f := range files {
		out, stderr, err := execute(t, context.Background(), "config", "check", f)
		require.NoError(t, err, f)
		require.Equal(t, f+": ok\n", out)
		for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
			if line != "" {
				require.Contains(t, line, "warning:", f)
			}
		}
	}
	out, _, err := execute(t, context.Background(), "config", "check")
	require.NoError(t, err)
	require.Equal(t, "default.conf (embedded): ok\n", out)
}

func TestConfigCheckErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	require.NoError(t, os.WriteFile(bad, []byte("qmgr {\n  queue_return_timout = 5d;\n  AQ_max_entries = many;\n}\n"), 0o644))
	_, _, err := execute(t, context.Background(), "config", "check", bad)
	require.EqualError(t, err, bad+`:2:3: unknown option "queue_return_timout" in section qmgr; did you mean "queue_return_timeout"?`+"\n"+
		bad+`:3:20: AQ_max_entries: expected a number, found "many"`)

	require.NoError(t, os.WriteFile(bad, []byte("smtps MTA {\n  listen_socket { port = 25; }\n"), 0o644))
	_, _, err = execute(t, context.Background(), "config", "check", bad)
	require.EqualError(t, err, bad+`:3:1: expected "}" to close section smtps MTA opened at line 1`)

	_, _, err = execute(t, context.Background(), "config", "check", filepath.Join(dir, "missing.conf"))
	require.ErrorContains(t, err, "no such file")
}

func TestConfigDumpRoundTrip(t *testing.T) {
	for _, args := range [][]string{{"config", "dump"}, {"config", "dump", "-f", "conf/testdata/seed002-multiple-smtps.conf"}} {
		dump, _, err := execute(t, context.Background(), args...)
		require.NoError(t, err)
		require.Contains(t, dump, "queue_return_timeout = 5d;")
		file := filepath.Join(t.TempDir(), "dump.conf")
		require.NoError(t, os.WriteFile(file, []byte(dump), 0o644))
		again, stderr, err := execute(t, context.Background(), "config", "dump", "-f", file)
		require.NoError(t, err)
		require.Empty(t, stderr, "a dump has nothing to warn about")
		// Only the header comment, which names the source, differs.
		body := func(s string) string { return s[strings.Index(s, "\n\n"):] }
		require.Equal(t, body(dump), body(again))
	}
}

func testConfig(t *testing.T) (conf, queue, maillog string) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	queue = filepath.Join(dir, "spool")
	maillog = filepath.Join(dir, "maillog")
	conf = filepath.Join(dir, "smx.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`
queue_directory = `+queue+`;
log { output = file; file = `+maillog+`; }
smtps MTA { listen_socket { address = 127.0.0.1; port = `+strconv.Itoa(port)+`; } }
`), 0o644))
	return conf, queue, maillog
}

func TestRunStopsOnCancel(t *testing.T) {
	file, queue, maillog := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // smxd starts, sees the cancellation and stops cleanly
	_, _, err := execute(t, ctx, "run", "-f", file, "--allow-root")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(queue, "ids"))
	require.NoError(t, err, "the id counter is reserved at start")
	log, err := os.ReadFile(maillog)
	require.NoError(t, err)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if strings.Contains(l, " smx: ") { // the global log, not the modules'
			lines = append(lines, l)
		}
	}
	require.Len(t, lines, 2, string(log))
	require.Regexp(t, `^\S+ smx: func=smxd_start, version=\S+, pid=\d+, config=`+file+`, queue_directory=`+queue+
		`, hostname=\S+, smtps=MTA\[127\.0\.0\.1:\d+\], control_socket=`+queue+`/control.sock, user=\S+$`, lines[0])
	require.Regexp(t, `^\S+ smx: func=smxd_stop, uptime=\d+$`, lines[1])
	require.Contains(t, string(log), "func=qmgr_recovery")
	require.Contains(t, string(log), "func=qmgr_snapshot")
}

func TestRunBadConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "smx.conf")
	require.NoError(t, os.WriteFile(file, []byte("smtps { }"), 0o644))
	_, _, err := execute(t, context.Background(), "run", "-f", file)
	require.ErrorContains(t, err, "nothing to listen on")
}

// TestBinarySignals builds smxd and runs it as an operator would: it must
// reopen its log on SIGUSR2 and exit 0 on SIGINT and on SIGTERM.
func TestBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "smxd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			file, _, maillog := testConfig(t)
			cmd := exec.Command(bin, "run", "-f", file, "--allow-root")
			stderr, err := cmd.StderrPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			done := make(chan error, 1)
			lines := bufio.NewScanner(stderr)
			waitFor := func(text string) {
				t.Helper()
				found := make(chan bool, 1)
				go func() {
					for lines.Scan() {
						if strings.Contains(lines.Text(), text) {
							found <- true
							return
						}
					}
					found <- false
				}()
				select {
				case ok := <-found:
					require.True(t, ok, "smxd ended before logging %q", text)
				case <-time.After(30 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("smxd did not log %q", text)
				}
			}
			waitFor("smxd started")

			// Rotation: move the log away, SIGUSR2, and the next line goes
			// to a new file.
			require.NoError(t, os.Rename(maillog, maillog+".0"))
			require.NoError(t, cmd.Process.Signal(syscall.SIGUSR2))
			waitFor("reopening log files")

			require.NoError(t, cmd.Process.Signal(sig))
			go func() { io.Copy(io.Discard, stderr); done <- cmd.Wait() }()
			select {
			case err := <-done:
				require.NoError(t, err, "smxd must exit 0 on %v", sig)
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("smxd did not exit on %v", sig)
			}
			old, err := os.ReadFile(maillog + ".0")
			require.NoError(t, err)
			require.Contains(t, string(old), "func=smxd_start")
			cur, err := os.ReadFile(maillog)
			require.NoError(t, err)
			require.Contains(t, string(cur), "func=smxd_stop")
		})
	}
}
