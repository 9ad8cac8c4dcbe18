package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/replay"
)

type storedMsg struct {
	ref  string
	env  content.Envelope
	body string
}

// prepareCDB fills a content store the way smxd would have: five messages,
// two of them released (delivered), one of them a DSN.
func prepareCDB(t *testing.T, dir string) (live []storedMsg, released []string) {
	t.Helper()
	s, err := content.Open(dir, content.Options{CompactInterval: -1})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	base := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	for i := range 5 {
		env := content.Envelope{
			Txn:      fmt.Sprintf("S00000000000000%02X00", i+1),
			Session:  "S00000000000000AA00",
			Listener: "MTA",
			Sender:   fmt.Sprintf("sender%d@example.org", i),
			Rcpts: []log.Recipient{
				{Addr: "a@example.net", Notify: log.NotifyFailure | log.NotifyDelay},
				{Addr: "b@example.net", ORCPT: "rfc822;B@example.net"},
			},
			Size:     1234,
			ClientIP: "127.0.0.1", ClientPort: 40000 + i, HELO: "client.example.org", Protocol: "ESMTP",
			// Received out of order: the log must come out sorted.
			ReceivedAt: base.Add(time.Duration(5-i) * time.Minute),
		}
		if i == 3 {
			env.Sender, env.DSNOf = "", "S0000000000000000100"
		}
		body := fmt.Sprintf("Received: from client.example.org ([127.0.0.1])\r\n\tby mx.example.org; Tue, 3 Feb 2026\r\n"+
			"Received: from earlier.example.org\r\n"+
			"Message-ID: <%d@example.org>\r\nSubject: test %d\r\n\r\nbody %d\r\n", i, i, i)
		w, err := s.Create(context.Background(), env)
		require.NoError(t, err)
		_, err = io.WriteString(w, body)
		require.NoError(t, err)
		ref, err := w.Commit(context.Background())
		require.NoError(t, err)
		if i == 1 || i == 4 {
			require.NoError(t, s.Release(ref))
			released = append(released, ref)
			continue
		}
		live = append(live, storedMsg{ref: ref, env: env, body: body})
	}
	return live, released
}

func TestReconstruct(t *testing.T) {
	cdb := filepath.Join(t.TempDir(), "cdb")
	logDir := filepath.Join(t.TempDir(), "eventlog")
	live, _ := prepareCDB(t, cdb)

	out, stderr, err := execute("reconstruct", "--cdb", cdb, "--log", logDir)
	require.NoError(t, err, stderr)
	require.Equal(t, fmt.Sprintf("3 messages queued again in %s, 0 damaged\n", logDir), out)
	require.Empty(t, stderr)

	l, err := log.Open(logDir, log.Options{})
	require.NoError(t, err)
	defer l.Close()
	require.EqualValues(t, 3, l.LastSeq())
	it := l.Iter(1)
	defer it.Close()
	var got []log.Event
	for it.Next() {
		got = append(got, it.Event())
	}
	require.NoError(t, it.Err())
	require.Len(t, got, 3)
	// Chronological: the prepared messages were received newest first.
	want := []storedMsg{live[2], live[1], live[0]}
	for i, ev := range got {
		m := want[i]
		require.Equal(t, log.TypeTxnReceived, ev.Type())
		require.Equal(t, m.env.Txn, ev.Txn)
		require.Equal(t, log.NoRcpt, ev.Rcpt)
		require.True(t, m.env.ReceivedAt.Equal(ev.Time))
		p := ev.Payload.(*log.TxnReceived)
		require.Equal(t, m.ref, p.Content)
		require.EqualValues(t, len(m.body), p.ContentSize)
		require.Equal(t, m.env.Sender, p.Sender)
		require.Equal(t, m.env.Rcpts, p.Rcpts)
		require.Equal(t, m.env.Session, p.Session)
		require.Equal(t, m.env.Listener, p.Listener)
		require.Equal(t, m.env.ClientPort, p.ClientPort)
		require.Equal(t, m.env.DSNOf, p.DSNOf)
		require.Equal(t, 2, p.Hops)
		require.True(t, strings.HasPrefix(p.MessageID, "<") && strings.HasSuffix(p.MessageID, "@example.org>"), p.MessageID)
	}

	// The new log rebuilds the queue as smxd's recovery does: every
	// recipient of every live message is waiting in IQDB, with the body's
	// reference, and nothing else is queued.
	r, err := replay.Recover(context.Background(), replay.FromLog(l))
	require.NoError(t, err)
	require.Zero(t, r.AnomalyCount)
	q := r.Queue()
	require.Equal(t, projections.Sizes{IQDB: 6}, q.Sizes())
	for _, m := range live {
		qm, ok := q.Message(m.env.Txn)
		require.True(t, ok, "%s not queued", m.env.Txn)
		require.Equal(t, m.ref, qm.Content)
		require.Equal(t, m.env.Sender, qm.Sender)
		require.Equal(t, m.env.DSNOf, qm.DSNOf)
		require.Equal(t, 2, qm.Live)
		for i, rc := range q.Recipients(m.env.Txn) {
			require.Equal(t, m.env.Rcpts[i].Addr, rc.Addr)
			require.Equal(t, projections.StateIncoming, rc.State)
		}
	}

	// The references in the new log still name the bodies.
	s, err := content.Open(cdb, content.Options{CompactInterval: -1})
	require.NoError(t, err)
	defer s.Close()
	for _, m := range live {
		r, err := s.Open(m.ref)
		require.NoError(t, err)
		b, err := io.ReadAll(r)
		r.Close()
		require.NoError(t, err)
		require.Equal(t, m.body, string(b))
	}
}

func TestReconstructRefusesALogWithEvents(t *testing.T) {
	cdb := filepath.Join(t.TempDir(), "cdb")
	logDir := filepath.Join(t.TempDir(), "eventlog")
	prepareCDB(t, cdb)
	_, _, err := execute("reconstruct", "--cdb", cdb, "--log", logDir)
	require.NoError(t, err)
	_, _, err = execute("reconstruct", "--cdb", cdb, "--log", logDir)
	require.ErrorContains(t, err, "holds 3 events: move it aside")
}

func TestReconstructDryRun(t *testing.T) {
	cdb := filepath.Join(t.TempDir(), "cdb")
	logDir := filepath.Join(t.TempDir(), "eventlog")
	live, _ := prepareCDB(t, cdb)
	out, _, err := execute("reconstruct", "-n", "--cdb", cdb, "--log", logDir)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 4)
	// The DSN (live[2]) was received first.
	first := live[2]
	require.Equal(t, fmt.Sprintf("%s ss_ta=%s received=2026-02-03T04:07:06Z size=%d from=<> to=<a@example.net>,<b@example.net>",
		first.ref, first.env.Txn, len(first.body)), lines[0])
	require.Equal(t, "3 messages would be queued again, 0 damaged", lines[3])
	_, err = os.Stat(logDir)
	require.ErrorIs(t, err, os.ErrNotExist, "a dry run writes nothing")
}

// TestReconstructDryRunBesideSmxd runs a dry run while another process
// would have the CDB open (here: this one, holding its lock, with a body
// committed since and the segment receiving bodies not sealed): the dry
// run reads it read-only, lists every body, and changes no file.
func TestReconstructDryRunBesideSmxd(t *testing.T) {
	cdb := filepath.Join(t.TempDir(), "cdb")
	live, _ := prepareCDB(t, cdb)
	s, err := content.Open(cdb, content.Options{CompactInterval: -1})
	require.NoError(t, err)
	defer s.Close()
	w, err := s.Create(context.Background(), content.Envelope{
		Txn: "S00000000000000FF00", Sender: "late@example.org", Rcpts: []log.Recipient{{Addr: "c@example.net"}},
	})
	require.NoError(t, err)
	_, err = io.WriteString(w, "Subject: late\r\n\r\nbody\r\n")
	require.NoError(t, err)
	late, err := w.Commit(context.Background())
	require.NoError(t, err)
	before := dirContents(t, cdb)

	out, stderr, err := execute("reconstruct", "-n", "--cdb", cdb, "--log", filepath.Join(t.TempDir(), "eventlog"))
	require.NoError(t, err, stderr)
	for _, m := range live {
		require.Contains(t, out, m.ref)
	}
	require.Contains(t, out, late+" ss_ta=S00000000000000FF00")
	require.Contains(t, out, "4 messages would be queued again, 0 damaged")
	require.Equal(t, before, dirContents(t, cdb), "a dry run changed the CDB")
}

// dirContents returns the files of dir with their contents.
func dirContents(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = string(b)
	}
	return out
}

func TestReconstructLeavesOutDamagedBodies(t *testing.T) {
	cdb := filepath.Join(t.TempDir(), "cdb")
	logDir := filepath.Join(t.TempDir(), "eventlog")
	live, _ := prepareCDB(t, cdb)
	// Damage the last byte of one body: find it by its text in the files.
	segs, err := filepath.Glob(filepath.Join(cdb, "*.seg"))
	require.NoError(t, err)
	damagedTxn := live[1].env.Txn
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		require.NoError(t, err)
		if i := strings.Index(string(b), "body 2\r\n"); i >= 0 {
			b[i+5] ^= 0xff
			require.NoError(t, os.WriteFile(seg, b, 0o640))
		}
	}
	out, stderr, err := execute("reconstruct", "--cdb", cdb, "--log", logDir)
	require.ErrorContains(t, err, "1 damaged bodies left out")
	require.Contains(t, stderr, "damaged: "+live[1].ref+" ss_ta="+damagedTxn)
	require.Contains(t, stderr, "checksum mismatch")
	require.Contains(t, out, "2 messages queued again")
}

func TestReconstructUsesConfiguration(t *testing.T) {
	q := t.TempDir()
	live, _ := prepareCDB(t, filepath.Join(q, "cdb"))
	cfg := filepath.Join(t.TempDir(), "smx.conf")
	require.NoError(t, os.WriteFile(cfg, []byte("queue_directory = "+q+";\n"), 0o644))
	out, stderr, err := execute("-f", cfg, "reconstruct", "--dry-run")
	require.NoError(t, err, stderr)
	require.Contains(t, out, live[0].ref)
	require.Contains(t, out, "3 messages would be queued again")
}
