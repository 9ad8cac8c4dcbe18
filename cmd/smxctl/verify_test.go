package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/replay"
	"github.com/smx-mta/smx/replay/replaytest"
)

// storeBody commits body to cdb for txn and returns its reference.
func storeBody(t *testing.T, cdb *content.Store, txn, body string) string {
	t.Helper()
	w, err := cdb.Create(context.Background(), content.Envelope{Txn: txn, Sender: "alice@example.org",
		Rcpts: []log.Recipient{{Addr: "bob@a.example"}}})
	require.NoError(t, err)
	_, err = w.Write([]byte(body))
	require.NoError(t, err)
	ref, err := w.Commit(context.Background())
	require.NoError(t, err)
	return ref
}

// cdbState lists the files of dir with their sizes and modification times.
func cdbState(t *testing.T, dir string) map[string][2]int64 {
	t.Helper()
	out := map[string][2]int64{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		fi, err := e.Info()
		require.NoError(t, err)
		out[e.Name()] = [2]int64{fi.Size(), fi.ModTime().UnixNano()}
	}
	return out
}

// TestVerifyChecksBodiesWhileSmxdRuns runs the real binary while the event
// log and the content store are held open by writers, as smxd holds them:
// verify checks the bodies of the queued messages by default, reports the
// one that is gone, and changes nothing in the content store.
func TestVerifyChecksBodiesWhileSmxdRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSmxctl(t)
	queueDir := t.TempDir()
	confPath := filepath.Join(t.TempDir(), "smx.conf")
	require.NoError(t, os.WriteFile(confPath, []byte("queue_directory = "+queueDir+";\n"), 0o644))
	ctx := context.Background()

	l, err := log.Open(filepath.Join(queueDir, "eventlog"), log.Options{})
	require.NoError(t, err)
	defer l.Close()
	cdbDir := filepath.Join(queueDir, "cdb")
	cdb, err := content.Open(cdbDir, content.Options{CompactInterval: -1})
	require.NoError(t, err)
	defer cdb.Close()

	refs := map[string]string{}
	for _, txn := range []string{"SA", "SB", "SC"} {
		refs[txn] = storeBody(t, cdb, txn, "Subject: "+txn+"\r\n\r\nbody\r\n")
	}
	b := replaytest.New()
	for _, txn := range []string{"SA", "SB", "SC"} {
		b.Receive(txn, "alice@example.org", 100, "bob@a.example")
	}
	b.Deliver("SC", 0, "mx.a.example", "192.0.2.1")
	b.Release("SC")
	for _, e := range b.Events() {
		switch p := e.Payload.(type) {
		case *log.TxnReceived:
			p.Content = refs[e.Txn]
		case *log.ContentReleased:
			p.Content = refs[e.Txn]
		}
	}
	require.NoError(t, b.WriteTo(ctx, l))
	require.NoError(t, cdb.Release(refs["SC"]))
	// SB's body is lost: released in the store while its message is
	// still queued.
	require.NoError(t, cdb.Release(refs["SB"]))

	before := cdbState(t, cdbDir)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"-f", confPath}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return out.String(), exitErr.ExitCode()
		}
		require.NoError(t, err)
		return out.String(), 0
	}
	out, code := run("verify")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "verify: FAILED: 1 violations: 5 events up to seq 5; 2 messages and 2 recipients queued at the end\n")
	require.Contains(t, out, "end of log: body-missing: SB: content "+refs["SB"]+" is missing from the content store (1 references)\n")
	require.NotContains(t, out, "SA")

	out, code = run("verify", "--content=false")
	require.Equal(t, 0, code, out)
	require.True(t, strings.HasPrefix(out, "verify: OK: 5 events"), out)

	require.Equal(t, before, cdbState(t, cdbDir), "verify changed the content store")
	_, err = os.Stat(filepath.Join(cdbDir, "readers"))
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// TestVerifyExcusesBodiesReleasedMeanwhile: a body found missing because
// smxd released it after verify read the log is not a violation when the
// events appended since hold the message's ContentReleased; one without
// stays a violation.
func TestVerifyExcusesBodiesReleasedMeanwhile(t *testing.T) {
	b := replaytest.New()
	b.Receive("SA", "alice@example.org", 100, "x@a.example")
	b.Receive("SB", "alice@example.org", 100, "y@a.example")
	src := &replay.Events{List: b.Events()}
	rep, err := replay.Verify(context.Background(), src, func(string) bool { return false })
	require.NoError(t, err)
	require.Equal(t, 2, rep.ByRule["body-missing"])

	// Meanwhile smxd delivered SA and released its body.
	b.Deliver("SA", 0, "mx.a.example", "192.0.2.1")
	b.Release("SA")
	later := &replay.Events{List: b.Events()}
	reopened := 0
	require.NoError(t, excuseReleased(context.Background(), rep, func() (replay.Source, func() error, error) {
		reopened++
		return later, func() error { return nil }, nil
	}))
	require.Equal(t, 1, reopened)
	require.Equal(t, 1, rep.Count)
	require.Equal(t, map[string]int{"body-missing": 1}, rep.ByRule)
	require.Len(t, rep.Violations, 1)
	require.Equal(t, "SB", rep.Violations[0].Txn)

	// Nothing missing: the log is not read again.
	ok := &replay.Report{}
	require.NoError(t, excuseReleased(context.Background(), ok, func() (replay.Source, func() error, error) {
		t.Fatal("reopened without a missing body")
		return nil, nil, nil
	}))
}
