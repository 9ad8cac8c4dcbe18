package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/scheduler/clock"
	"github.com/smx-mta/smx/smtp/client"
)

// boomClient panics for routes to boom.test and delivers the rest.
type boomClient struct{ real *client.Client }

func (b boomClient) Connect(ctx context.Context, r client.Route) (*client.Session, []client.Attempt, error) {
	if len(r.Hops) > 0 && strings.HasSuffix(r.Hops[0].Host, "boom.test") {
		panic("delivery agent bug")
	}
	return b.real.Connect(ctx, r)
}

func runScheduler(t *testing.T, opts Options) (*Scheduler, *memLog, *memContent, context.CancelFunc, chan error) {
	t.Helper()
	ml := newMemLog(clock.Real{})
	content := newMemContent()
	ids := atomic.Int32{}
	opts.Hostname = "mx.smx.test"
	opts.Log, opts.Feed, opts.Content = ml, ml, content
	opts.NewTxnID = func() (string, error) { return fmt.Sprintf("D%d", ids.Add(1)), nil }
	sched, err := New(projections.New(), opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- sched.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-runErr })
	return sched, ml, content, cancel, runErr
}

func receive(t *testing.T, ml *memLog, content *memContent, txn, rcpt string) {
	t.Helper()
	body := "Subject: " + txn + "\r\n\r\nbody\r\n"
	ref := content.put(body)
	_, err := ml.Append(context.Background(), log.Event{Txn: txn, Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
		Sender: "alice@a.test", Rcpts: []log.Recipient{{Addr: rcpt}}, Content: ref, ContentSize: int64(len(body)), ReceivedAt: time.Now(),
	}})
	require.NoError(t, err)
}

// TestPanicInDeliveryEndsOnlyThatAttempt: a delivery agent that panics
// costs its own transaction a deferral, logged with the ids; the scheduler
// goes on delivering the rest.
func TestPanicInDeliveryEndsOnlyThatAttempt(t *testing.T) {
	s := &sink{}
	port := startSink(t, s)
	_, ml, content, _, _ := runScheduler(t, Options{
		Resolver: loopbackResolver{port: port},
		Client:   boomClient{client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second})},
	})
	receive(t, ml, content, "T1", "u@boom.test")
	receive(t, ml, content, "T2", "v@ok.test")
	var deferred *log.RcptDeferred
	waitFor(t, ml, "T1 deferred and T2 delivered", func(evs []log.Event) bool {
		delivered := false
		for _, ev := range evs {
			if p, ok := ev.Payload.(*log.RcptDeferred); ok && ev.Txn == "T1" {
				deferred = p
			}
			if ev.Type() == log.TypeRcptDelivered && ev.Txn == "T2" {
				delivered = true
			}
		}
		return deferred != nil && delivered
	})
	require.Contains(t, deferred.Reason, "internal error in delivery: delivery agent bug")
	require.True(t, deferred.NextTry.After(time.Now().Add(-time.Second)))
	require.Len(t, s.messages(), 1)

	// Still running: another message goes through.
	receive(t, ml, content, "T3", "w@ok.test")
	waitFor(t, ml, "T3 delivered", func(evs []log.Event) bool {
		for _, ev := range evs {
			if ev.Type() == log.TypeRcptDelivered && ev.Txn == "T3" {
				return true
			}
		}
		return false
	})
}

// gateSink holds every DATA until the test opens the gate.
type gateSink struct {
	gate    chan struct{}
	inData  chan struct{}
	entered atomic.Bool
}

func (g *gateSink) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return gateSession{g}, nil }

type gateSession struct{ g *gateSink }

func (gateSession) Reset()                                 {}
func (gateSession) Logout() error                          { return nil }
func (gateSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (gateSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s gateSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	if s.g.entered.CompareAndSwap(false, true) {
		close(s.g.inData)
	}
	<-s.g.gate
	return nil
}

// TestDrainLetsAttemptsFinish: Drain waits for the attempt in flight,
// whose outcome reaches the log, and starts nothing new.
func TestDrainLetsAttemptsFinish(t *testing.T) {
	g := &gateSink{gate: make(chan struct{}), inData: make(chan struct{})}
	port := startSink(t, g)
	sched, ml, content, _, _ := runScheduler(t, Options{
		Resolver: loopbackResolver{port: port},
		Client:   client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second}),
	})
	receive(t, ml, content, "T1", "u@b.test")
	select {
	case <-g.inData:
	case <-time.After(20 * time.Second):
		t.Fatal("the delivery did not reach DATA")
	}
	drained := make(chan error, 1)
	go func() { drained <- sched.Drain(context.Background()) }()
	// Or T2 may be received and started before Drain reached the loop.
	waitDraining(t, sched)

	// While draining, new mail is applied but not started.
	receive(t, ml, content, "T2", "v@b.test")
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with an attempt in flight", err)
	default:
	}
	close(g.gate)
	select {
	case err := <-drained:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Drain did not return after the attempt finished")
	}
	ml.mu.Lock()
	evs := append([]log.Event(nil), ml.events...)
	ml.mu.Unlock()
	var delivered, startedT2 bool
	for _, ev := range evs {
		if ev.Type() == log.TypeRcptDelivered && ev.Txn == "T1" {
			delivered = true
		}
		if ev.Type() == log.TypeAttemptStarted && ev.Txn == "T2" {
			startedT2 = true
		}
	}
	require.True(t, delivered, "the attempt in flight finished with its outcome in the log")
	require.False(t, startedT2, "nothing new starts while draining")

	// A Drain bounded by a context that ends reports it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, sched.Drain(ctx), context.Canceled)
}

// waitDraining waits, bounded, until the scheduler's loop has taken a
// Drain called on another goroutine.
func waitDraining(t *testing.T, sched *Scheduler) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for draining := false; !draining; {
		require.NoError(t, sched.call(context.Background(), func(c *core) { draining = c.draining }))
		require.True(t, time.Now().Before(deadline), "Drain never reached the scheduler's loop")
		runtime.Gosched()
	}
}

// pausableFeed is the memLog's feed with a pause: events read while it is
// paused are handed over only once it resumes, as a feed that lags does.
type pausableFeed struct {
	l      *memLog
	mu     sync.Mutex
	resume chan struct{} // nil while not paused
}

func (f *pausableFeed) pause() {
	f.mu.Lock()
	f.resume = make(chan struct{})
	f.mu.Unlock()
}

func (f *pausableFeed) unpause() {
	f.mu.Lock()
	close(f.resume)
	f.resume = nil
	f.mu.Unlock()
}

func (f *pausableFeed) Next(ctx context.Context, after uint64) ([]log.Event, error) {
	evs, err := f.l.Next(ctx, after)
	f.mu.Lock()
	wait := f.resume
	f.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return evs, err
}

// TestDrainWaitsForItsOwnEvents: Drain returns only once the outcome the
// last attempt appended has come back through the feed, so that the
// snapshot smxd takes at a graceful stop covers it.
func TestDrainWaitsForItsOwnEvents(t *testing.T) {
	g := &gateSink{gate: make(chan struct{}), inData: make(chan struct{})}
	port := startSink(t, g)
	ml := newMemLog(clock.Real{})
	feed := &pausableFeed{l: ml}
	content := newMemContent()
	sched, err := New(projections.New(), Options{
		Hostname: "mx.smx.test", Log: ml, Feed: feed, Content: content,
		Resolver: loopbackResolver{port: port},
		Client:   client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second}),
		NewTxnID: func() (string, error) { return "D1", nil },
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- sched.Run(ctx) }()
	defer func() { cancel(); <-runErr }()

	receive(t, ml, content, "T1", "u@b.test")
	select {
	case <-g.inData:
	case <-time.After(20 * time.Second):
		t.Fatal("the delivery did not reach DATA")
	}
	feed.pause()
	drained := make(chan error, 1)
	go func() { drained <- sched.Drain(context.Background()) }()
	waitDraining(t, sched)
	close(g.gate)
	waitFor(t, ml, "the outcome in the log", func(evs []log.Event) bool { return count(evs, log.TypeRcptDelivered) == 1 })
	// The worker reports after its append: wait until the scheduler has
	// taken the report (no session busy any more).
	deadline := time.Now().Add(20 * time.Second)
	for {
		states, err := sched.ConnStates(ctx)
		require.NoError(t, err)
		busy := 0
		for _, st := range states {
			busy += st.Busy
		}
		if busy == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the delivery's report never came")
		runtime.Gosched()
	}
	var stillDraining bool
	require.NoError(t, sched.call(ctx, func(c *core) { stillDraining = c.drained != nil }))
	require.True(t, stillDraining, "Drain ended while its outcome had not reached the projection")

	feed.unpause()
	select {
	case err := <-drained:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Drain did not return once the feed caught up")
	}
	var snap bytes.Buffer
	seq, err := sched.Snapshot(ctx, &snap)
	require.NoError(t, err)
	ml.mu.Lock()
	last := uint64(len(ml.events))
	ml.mu.Unlock()
	require.Equal(t, last, seq, "the snapshot after Drain misses events the scheduler appended")
}
