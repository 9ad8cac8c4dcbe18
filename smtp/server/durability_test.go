package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/log"
)

// failingContent wraps the real CDB; it can make Commit fail and records
// the references it committed.
type failingContent struct {
	ContentStore
	failCommit bool
	failCreate bool
	mu         sync.Mutex
	refs       []string
}

type failingWriter struct {
	BodyWriter
	c *failingContent
}

func (f *failingContent) Create(ctx context.Context, txn string, env *Envelope) (BodyWriter, error) {
	if f.failCreate {
		return nil, errors.New("disk on fire")
	}
	w, err := f.ContentStore.Create(ctx, txn, env)
	if err != nil {
		return nil, err
	}
	return &failingWriter{w, f}, nil
}

func (w *failingWriter) Commit(ctx context.Context) (string, error) {
	if w.c.failCommit {
		w.BodyWriter.Abort()
		return "", errors.New("fsync failed")
	}
	ref, err := w.BodyWriter.Commit(ctx)
	w.c.mu.Lock()
	w.c.refs = append(w.c.refs, ref)
	w.c.mu.Unlock()
	return ref, err
}

// failingLog fails every append: with err, or with an error that says
// the events were not written.
type failingLog struct {
	EventLog
	err error
}

func (f failingLog) Append(context.Context, ...log.Event) (uint64, error) {
	if f.err != nil {
		return 0, f.err
	}
	return 0, errors.New("log: closed")
}

// countBodies returns the bodies in the CDB that are not released.
func countBodies(t *testing.T, cdb *content.Store) int {
	t.Helper()
	n := 0
	if err := cdb.Scan(context.Background(), func(b content.Body) error {
		if cdb.Exists(b.Ref) {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func sendOne(r *raw, wantFinal string) {
	r.t.Helper()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<r@y.example>", "250")
	r.cmd("DATA", "354")
	r.cmd("Subject: d\r\n\r\nbody\r\n.", wantFinal)
}

// TestFinalDotFailures checks the durability contract: when the body or
// the event cannot be made durable the reply is 451 and nothing of the
// transaction remains visible.
func TestFinalDotFailures(t *testing.T) {
	t.Run("commit", func(t *testing.T) {
		st := openStores(t, t.TempDir())
		fc := &failingContent{ContentStore: NewContentStore(st.cdb), failCommit: true}
		ts := startServerOn(t, st, func(o *Options) { o.Content = fc })
		r := ts.hello()
		sendOne(r, "451 4.3.0")
		if n := len(st.received(t)); n != 0 {
			t.Errorf("%d events", n)
		}
		if n := countBodies(t, st.cdb); n != 0 {
			t.Errorf("%d bodies left", n)
		}
		// The session goes on.
		r.cmd("MAIL FROM:<s@x.example>", "250")
	})
	t.Run("create", func(t *testing.T) {
		st := openStores(t, t.TempDir())
		fc := &failingContent{ContentStore: NewContentStore(st.cdb), failCreate: true}
		ts := startServerOn(t, st, func(o *Options) { o.Content = fc })
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("RCPT TO:<r@y.example>", "250")
		r.cmd("DATA", "451 4.3.0")
		r.cmd("MAIL FROM:<s@x.example>", "250")
	})
	t.Run("event log", func(t *testing.T) {
		st := openStores(t, t.TempDir())
		fc := &failingContent{ContentStore: NewContentStore(st.cdb)}
		ts := startServerOn(t, st, func(o *Options) { o.Content = fc; o.Log = failingLog{} })
		r := ts.hello()
		sendOne(r, "451 4.3.0")
		if len(fc.refs) != 1 {
			t.Fatalf("committed %v", fc.refs)
		}
		if st.cdb.Exists(fc.refs[0]) {
			t.Error("committed body without an event was not released")
		}
		if !strings.Contains(ts.log.all(), "stat=451") {
			t.Error("failure not in the mail log")
		}
	})
	t.Run("event log sync", func(t *testing.T) {
		// The disk failed under the event log: the event may be durable
		// all the same, so its body stays for recovery to find (and for
		// ReleaseOrphans to give back at the next start if it is not).
		st := openStores(t, t.TempDir())
		fc := &failingContent{ContentStore: NewContentStore(st.cdb)}
		failed := fmt.Errorf("%w: log: sync events 7-7: input/output error", log.ErrFailed)
		ts := startServerOn(t, st, func(o *Options) { o.Content = fc; o.Log = failingLog{err: failed} })
		r := ts.hello()
		sendOne(r, "451 4.3.0")
		if len(fc.refs) != 1 {
			t.Fatalf("committed %v", fc.refs)
		}
		if !st.cdb.Exists(fc.refs[0]) {
			t.Error("the body of an event whose sync failed was released")
		}
	})
	t.Run("disk space", func(t *testing.T) {
		st := openStores(t, t.TempDir())
		st.cdb.Close()
		cdb, err := content.Open(st.dir+"/cdb", content.Options{CompactInterval: -1, FreeSpace: func(string) (int64, error) { return 1 << 20, nil }})
		if err != nil {
			t.Fatal(err)
		}
		st.cdb = cdb
		ts := startServerOn(t, st, func(o *Options) { o.Content = NewContentStore(cdb) })
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "452 4.3.1")
	})
}

// TestIDsNeverRepeat restarts the server on the same stores: the new ids
// are all above the old ones.
func TestIDsNeverRepeat(t *testing.T) {
	dir := t.TempDir()
	seen := map[string]bool{}
	for round := range 3 {
		st := openStores(t, dir)
		srv, err := New(Options{Hostname: "mx", IDs: st.seq.Generator(0), Content: NewContentStore(st.cdb), Log: st.log, Policy: &testPolicy{}})
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			id, err := srv.opts.IDs.Next()
			if err != nil {
				t.Fatal(err)
			}
			if seen[id.String()] {
				t.Fatalf("round %d: id %s repeats", round, id)
			}
			seen[id.String()] = true
		}
		st.close()
	}
}
