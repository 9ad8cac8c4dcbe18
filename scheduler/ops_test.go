package scheduler

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/smtp/client"
	"github.com/stretchr/testify/require"
)

// busySink answers 451 to one recipient until told otherwise.
type busySink struct {
	sink
	mu   sync.Mutex
	busy bool
}

func (b *busySink) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	s, _ := b.sink.NewSession(c)
	return &busySession{Session: s, b: b}, nil
}

type busySession struct {
	gosmtp.Session
	b *busySink
}

func (s *busySession) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	s.b.mu.Lock()
	busy := s.b.busy
	s.b.mu.Unlock()
	if busy {
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 2, 1}, Message: "try later"}
	}
	return s.Session.Rcpt(to, opts)
}

// TestOperatorFlushAndHold checks the operator's actions end to end: a
// deferred recipient is flushed by domain and delivered at once, and a
// held message waits until released.
func TestOperatorFlushAndHold(t *testing.T) {
	bs := &busySink{busy: true}
	port := startSink(t, bs)
	ml := newMemLog(clockReal{})
	content := newMemContent()
	sched, err := New(projections.New(), Options{
		Hostname: "mx.smx.test", Log: ml, Feed: ml, Content: content,
		Resolver: loopbackResolver{port: port},
		Client:   client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second}),
		NewTxnID: func() (string, error) { return "D1", nil },
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- sched.Run(ctx) }()
	who := log.Operator{User: "root", Reason: "test"}

	ref := content.put("Subject: x\r\n\r\nx\r\n")
	_, err = ml.Append(ctx, log.Event{Txn: "T1", Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
		Sender: "a@a.test", Rcpts: []log.Recipient{{Addr: "u@b.test"}}, Content: ref, ReceivedAt: time.Now(),
	}})
	require.NoError(t, err)
	waitFor(t, ml, "the deferral", func(evs []log.Event) bool { return count(evs, log.TypeRcptDeferred) == 1 })

	waitApplied(t, sched, ml)

	// Hold it, then flush: a held recipient is not offered.
	require.NoError(t, sched.Hold(ctx, "T1", log.NoRcpt, who))
	bs.mu.Lock()
	bs.busy = false
	bs.mu.Unlock()
	n, err := sched.FlushDomain(ctx, "b.test", who)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	waitFor(t, ml, "the requeue", func(evs []log.Event) bool { return count(evs, log.TypeRequeue) == 1 })
	// Release: now it goes at once, well before its retry time.
	require.NoError(t, sched.Release(ctx, "T1", log.NoRcpt, who))
	waitFor(t, ml, "the delivery", func(evs []log.Event) bool { return count(evs, log.TypeRcptDelivered) == 1 })
	evs := ml.since(0)
	var held, released int
	for i, ev := range evs {
		switch ev.Type() {
		case log.TypeHold:
			held = i
		case log.TypeRelease:
			released = i
		}
	}
	require.Less(t, held, released)
	for _, ev := range evs[held:released] {
		require.NotEqual(t, log.TypeAttemptStarted, ev.Type(), "attempt while held")
	}
	_, err = sched.FlushDomain(ctx, "nothing.test", who)
	require.NoError(t, err)
	for _, arg := range []string{"@b.test", "b.test", "#all"} {
		require.NoError(t, sched.Flush(ctx, arg))
	}
	// Delivered: a redirect of the message finds nothing queued (or, once
	// its body is released, no message).
	waitApplied(t, sched, ml)
	err = sched.Redirect(ctx, "T1", log.NoRcpt, "x@y", who)
	require.True(t, errors.Is(err, ErrNotLive) || errors.Is(err, ErrUnknownMessage), "%v", err)
	require.ErrorIs(t, sched.Delete(ctx, "T9", log.NoRcpt, who), ErrUnknownMessage)
	cancel()
	<-runErr
}

// waitApplied waits, bounded, until the scheduler has applied every event
// of the log to its queue.
func waitApplied(t *testing.T, sched *Scheduler, ml *memLog) {
	t.Helper()
	ml.mu.Lock()
	target := uint64(len(ml.events))
	ml.mu.Unlock()
	waitCore(t, sched, func(c *core) string {
		if seq := c.q.Seq(); seq < target {
			return fmt.Sprintf("scheduler applied %d of %d events", seq, target)
		}
		return ""
	})
}

// waitReported waits, bounded, until every delivery agent has reported
// to the scheduler: an agent appends its outcome before it reports, and
// the connection states change with the report.
func waitReported(t *testing.T, sched *Scheduler) {
	t.Helper()
	waitCore(t, sched, func(c *core) string {
		if c.delivering > 0 {
			return fmt.Sprintf("%d delivery agents have not reported", c.delivering)
		}
		return ""
	})
}

// waitCore asks the scheduler's loop, bounded, until pending returns ""
// (what is still awaited otherwise, for the failure).
func waitCore(t *testing.T, sched *Scheduler, pending func(c *core) string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting string
		require.NoError(t, sched.call(context.Background(), func(c *core) { waiting = pending(c) }))
		if waiting == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(waiting)
		}
		runtime.Gosched()
	}
}

// TestLogFeed feeds the scheduler from a real event log.
func TestLogFeed(t *testing.T) {
	l, err := log.Open(t.TempDir(), log.Options{})
	require.NoError(t, err)
	defer l.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		_, err := l.Append(ctx, log.Event{Txn: fmt.Sprintf("T%d", i), Rcpt: log.NoRcpt, Payload: &log.TxnReceived{Sender: "a@b"}})
		require.NoError(t, err)
	}
	f := &LogFeed{Log: l}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got []log.Event
	for len(got) < 3 {
		evs, err := f.Next(tctx, uint64(len(got)))
		require.NoError(t, err)
		got = append(got, evs...)
	}
	require.Equal(t, uint64(3), got[2].Seq)
	evs, err := f.Next(tctx, 1)
	require.NoError(t, err)
	require.Equal(t, uint64(2), evs[0].Seq)
	go l.Append(ctx, log.Event{Txn: "T3", Rcpt: log.NoRcpt, Payload: &log.TxnReceived{Sender: "a@b"}})
	evs, err = f.Next(tctx, 3)
	require.NoError(t, err)
	require.Equal(t, uint64(4), evs[0].Seq)
}

// TestOperatorDeleteInFlight: a delete or redirect of a recipient whose
// delivery is in progress is refused with ErrInFlight and appends
// nothing; the delivery ends as it would have, and the log folds without
// an outcome after a delete.
func TestOperatorDeleteInFlight(t *testing.T) {
	g := &gateSink{gate: make(chan struct{}), inData: make(chan struct{})}
	port := startSink(t, g)
	sched, ml, content, _, _ := runScheduler(t, Options{
		Resolver: loopbackResolver{port: port},
		Client:   client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second}),
	})
	ctx := context.Background()
	who := log.Operator{User: "root", Reason: "test"}
	receive(t, ml, content, "T1", "u@b.test")
	select {
	case <-g.inData:
	case <-time.After(20 * time.Second):
		t.Fatal("the delivery did not reach the sink")
	}

	err := sched.Delete(ctx, "T1", 0, who)
	require.ErrorIs(t, err, ErrInFlight)
	require.ErrorContains(t, err, "T1:0")
	require.ErrorIs(t, sched.Delete(ctx, "T1", log.NoRcpt, who), ErrInFlight)
	require.ErrorIs(t, sched.Redirect(ctx, "T1", 0, "v@b.test", who), ErrInFlight)
	require.ErrorIs(t, sched.Redirect(ctx, "T1", log.NoRcpt, "v@b.test", who), ErrInFlight)
	// Hold is no terminal action: it is taken, and no new attempt starts.
	require.NoError(t, sched.Hold(ctx, "T1", log.NoRcpt, who))

	close(g.gate)
	waitFor(t, ml, "the delivery", func(evs []log.Event) bool { return count(evs, log.TypeRcptDelivered) == 1 })
	waitApplied(t, sched, ml)
	err = sched.Delete(ctx, "T1", 0, who)
	require.True(t, errors.Is(err, ErrNotLive) || errors.Is(err, ErrUnknownMessage), "delivered (and maybe released): %v", err)

	ml.mu.Lock()
	evs := append([]log.Event(nil), ml.events...)
	ml.mu.Unlock()
	require.Zero(t, count(evs, log.TypeDelete))
	require.Zero(t, count(evs, log.TypeRedirect))
	q := projections.New()
	for _, ev := range evs {
		require.NoError(t, q.Apply(ev), "the log folds without anomalies")
	}
}
