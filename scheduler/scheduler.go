// Package scheduler is the seed's QMGR: it moves recipients from the
// incoming queue (IQDB) and the deferred queue (DEFEDB) into the active
// queue (AQ) fairly, has them resolved by SMAR, groups the recipients of
// one message that share a destination into delivery transactions, hands
// those to the SMTP/LMTP client within per-IP slow start limits and over
// reused sessions, and writes every outcome as an event: RcptResolved,
// AttemptStarted, AttemptFinished, RcptDelivered, RcptDeferred (with the
// next try, computed per destination), RcptFailed, RcptExpired. It makes
// the DSNs (bounces, delay warnings, success notices) as new messages in
// the queue, releases bodies nothing references, reports its load to the
// SMTP server, and appends the operator's events.
//
// The scheduler owns its projections.Queue: it applies every event of the
// log to it, in order, from the Feed, its own appends included. It never
// reaches into another component's state: the log, the content store, the
// resolver and the client are interfaces it is given. Time and randomness
// come from Options, so tests run days of retries in milliseconds.
//
// docs/queue.md describes the scheduling, retries, expiry and DSNs with
// every option.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/smtp/client"
)

// Scheduler is QMGR. Build it with New and run it with Run.
type Scheduler struct {
	opts Options
	core *core

	calls  chan func(*core) // closures run on the loop's goroutine
	wg     sync.WaitGroup
	ctx    context.Context // the context of Run, for workers
	queued *appender
	// durable appends the events of resolution and release workers
	// together (durableBatcher).
	durable *durableBatcher

	sessMu  sync.Mutex
	sessIDs map[*client.Session]string // da_sess of open sessions

	load    atomic.Pointer[LoadState]
	started atomic.Bool

	// appended is the highest sequence number an append of the
	// scheduler's got back (trackedLog); draining is set by Drain. Drain
	// returns only once the projection has applied everything up to
	// appended, so that the snapshot taken at a graceful stop covers the
	// outcomes of the attempts it let finish.
	appended atomic.Uint64
	draining atomic.Bool
}

// trackedLog is the event log as the scheduler appends to it: it notes
// the sequence numbers its appends got.
type trackedLog struct {
	EventLog
	last *atomic.Uint64
}

func (l trackedLog) Append(ctx context.Context, events ...log.Event) (uint64, error) {
	seq, err := l.EventLog.Append(ctx, events...)
	if err == nil {
		for {
			old := l.last.Load()
			if seq <= old || l.last.CompareAndSwap(old, seq) {
				break
			}
		}
	}
	return seq, err
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// New returns a scheduler over q, the projection restored from the
// newest snapshot and the log up to q.Seq() (projections.New() for an
// empty log). The scheduler owns q from now on.
func New(q *projections.Queue, opts Options) (*Scheduler, error) {
	opts = opts.withDefaults()
	switch {
	case opts.Log == nil:
		return nil, errors.New("scheduler: Options.Log is required")
	case opts.Feed == nil:
		return nil, errors.New("scheduler: Options.Feed is required")
	case opts.Resolver == nil:
		return nil, errors.New("scheduler: Options.Resolver is required")
	case opts.Client == nil:
		return nil, errors.New("scheduler: Options.Client is required")
	case opts.Content == nil:
		return nil, errors.New("scheduler: Options.Content is required")
	case opts.NewTxnID == nil:
		return nil, errors.New("scheduler: Options.NewTxnID is required")
	}
	s := &Scheduler{opts: opts, calls: make(chan func(*core), 64), sessIDs: map[*client.Session]string{}}
	s.opts.Log = trackedLog{EventLog: opts.Log, last: &s.appended}
	c, err := newCore(&s.opts, q, liveExecutor{s})
	if err != nil {
		return nil, err
	}
	s.core = c
	s.queued = newAppender(s)
	s.durable = newDurableBatcher(s)
	c.appendedSeq = s.appended.Load
	c.appendsPending = func() bool { return s.queued.pending.Load() > 0 }
	s.load.Store(&LoadState{AQMax: opts.AQMaxEntries, IQDBMax: opts.IQDBMaxEntries})
	return s, nil
}

// Run schedules until ctx is done, then waits for the deliveries in
// flight to end (their context is cancelled too) and closes idle
// sessions. It returns ctx's error, or the feed's if that fails.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("scheduler: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = ctx
	c := s.core
	type batch struct {
		events []log.Event
		err    error
	}
	feed := make(chan batch, 4)
	go func() {
		after := c.q.Seq()
		for {
			evs, err := s.opts.Feed.Next(ctx, after)
			if err != nil {
				feed <- batch{err: err}
				return
			}
			if len(evs) == 0 {
				continue
			}
			after = evs[len(evs)-1].Seq
			select {
			case feed <- batch{events: evs}:
			case <-ctx.Done():
				feed <- batch{err: ctx.Err()}
				return
			}
		}
	}()
	s.wg.Go(s.queued.run)
	s.wg.Go(s.durable.run)
	timer := s.opts.Clock.NewTimer(time.Hour)
	defer timer.Stop()
	c.start(s.opts.Clock.Now())
	var runErr error
	for runErr == nil {
		c.step(s.opts.Clock.Now())
		s.publishLoad()
		timer.Stop()
		if next, ok := c.nextWake(); ok {
			timer.Reset(max(next.Sub(s.opts.Clock.Now()), 0))
		}
		select {
		case b := <-feed:
			if b.err != nil {
				runErr = b.err
				break
			}
			c.now = s.opts.Clock.Now()
			for _, ev := range b.events {
				c.apply(ev)
			}
		case f := <-s.calls:
			c.now = s.opts.Clock.Now()
			f(c)
		case <-timer.C():
		}
	}
	cancel()
	c.shutdown()
	// Let finishing workers report without blocking on a loop that is
	// gone.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	for {
		select {
		case f := <-s.calls:
			f(c)
		case <-done:
			if errors.Is(runErr, context.Canceled) {
				return context.Canceled
			}
			return runErr
		}
	}
}

// call runs f on the loop's goroutine and waits for it.
func (s *Scheduler) call(ctx context.Context, f func(*core)) error {
	done := make(chan struct{})
	select {
	case s.calls <- func(c *core) { f(c); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// report hands a worker's result to the loop; it never blocks the worker
// for long because the loop drains calls even while shutting down.
func (s *Scheduler) report(f func(*core)) { s.calls <- f }

// liveExecutor carries out the core's decisions with goroutines.
type liveExecutor struct{ s *Scheduler }

func (x liveExecutor) appendEvents(events []log.Event) { x.s.queued.add(events) }

func (x liveExecutor) resolve(job *resolveJob) {
	s := x.s
	s.wg.Go(func() {
		var events []log.Event
		func() {
			defer s.recoverResolve(job, &events)
			events = s.runResolve(s.ctx, job)
		}()
		s.durable.add(events, func(err error) {
			if err != nil {
				s.opts.Logger.Error("scheduler: append resolution", "txn", job.txn, "err", err)
			}
			s.report(func(c *core) { c.resolveDone(job) })
		})
	})
}

func (x liveExecutor) deliver(job *deliveryJob) {
	s := x.s
	s.wg.Go(func() {
		done := deliveryDone{job: job}
		func() {
			defer s.recoverDelivery(job)
			done = s.runDelivery(s.ctx, job)
		}()
		s.report(func(c *core) { c.delivered(done) })
	})
}

func (x liveExecutor) buildDSN(job *dsnJob) {
	s := x.s
	s.wg.Go(func() {
		var err error
		func() {
			defer recoverAs(s, "DSN", job.orig.Txn, &err)
			err = s.runDSN(s.ctx, job)
		}()
		if err != nil {
			s.opts.Logger.Error("scheduler: build DSN", "txn", job.orig.Txn, "kind", job.kind, "err", err)
		}
		s.report(func(c *core) { c.dsnDone(job, err) })
	})
}

func (x liveExecutor) release(m projections.Message) {
	s := x.s
	ev := log.Event{Txn: m.Txn, Rcpt: log.NoRcpt, Payload: &log.ContentReleased{Content: m.Content}}
	s.durable.add([]log.Event{ev}, func(err error) {
		if err == nil && m.Content != "" {
			if rerr := s.opts.Content.Release(m.Content); rerr != nil {
				// The event is durable: a restart lists nothing to
				// release, so the store's own sweep must reclaim it.
				s.opts.Logger.Error("scheduler: release content", "txn", m.Txn, "content", m.Content, "err", rerr)
			}
		}
		s.report(func(c *core) { c.releaseDone(m.Txn, err) })
	})
}

func (x liveExecutor) closeSession(sess *client.Session) {
	s := x.s
	s.sessMu.Lock()
	delete(s.sessIDs, sess)
	s.sessMu.Unlock()
	s.wg.Go(func() { sess.Close() })
}

// appender appends the core's events in the order decided, batching what
// accumulates while an append is in progress. The loop never waits for it.
type appender struct {
	s      *Scheduler
	mu     sync.Mutex
	queue  []log.Event
	adds   int64 // add calls whose events are in queue
	signal chan struct{}
	// pending counts the add calls whose events are not appended (or
	// given up) yet.
	pending atomic.Int64
}

func newAppender(s *Scheduler) *appender { return &appender{s: s, signal: make(chan struct{}, 1)} }

func (a *appender) add(events []log.Event) {
	a.pending.Add(1)
	a.mu.Lock()
	a.queue = append(a.queue, events...)
	a.adds++
	a.mu.Unlock()
	select {
	case a.signal <- struct{}{}:
	default:
	}
}

func (a *appender) run() {
	for {
		select {
		case <-a.signal:
		case <-a.s.ctx.Done():
			return
		}
		a.mu.Lock()
		events, adds := a.queue, a.adds
		a.queue, a.adds = nil, 0
		a.mu.Unlock()
		if len(events) == 0 {
			continue
		}
		if _, err := a.s.opts.Log.Append(a.s.ctx, events...); err != nil {
			a.s.opts.Logger.Error("scheduler: append", "events", len(events), "err", err)
		}
		a.pending.Add(-adds)
		if a.s.draining.Load() {
			a.s.report(func(c *core) { c.checkDrained() })
		}
	}
}

// LoadState is the scheduler's report to the SMTP server (seed 004, "Load
// Control"): how full the queues are and whether disk space is short. The
// server throttles or refuses new mail from it, so that delivery is
// favoured over acceptance.
type LoadState struct {
	IQDB    int // recipients waiting in IQDB
	IQDBMax int // IQDB max_cache_entries
	AQ      int // recipients in AQ
	AQMax   int // AQ_max_entries
	DEFEDB  int // recipients in DEFEDB
	// DiskFree is the free space in bytes, -1 when unknown.
	DiskFree int64
	// Throttle is true when the server should accept mail more slowly:
	// IQDB is more than 80% full or AQ is full.
	Throttle bool
	// Refuse is true when the server should answer new transactions with
	// a temporary error: IQDB is full, or free disk space fell below
	// min_disk_space and has not yet come back above ok_disk_space.
	Refuse bool
	// Reason says why Throttle or Refuse is set.
	Reason string
}

// LoadState returns the load as of the scheduler's last step. It is cheap
// and safe for concurrent use.
func (s *Scheduler) LoadState() LoadState { return *s.load.Load() }

func (s *Scheduler) publishLoad() {
	c := s.core
	sizes := c.q.Sizes()
	st := &LoadState{IQDB: sizes.IQDB, IQDBMax: s.opts.IQDBMaxEntries, AQ: sizes.AQ, AQMax: s.opts.AQMaxEntries, DEFEDB: sizes.DEFEDB, DiskFree: -1}
	if s.opts.DiskFree != nil {
		if free, err := s.opts.DiskFree(); err == nil {
			st.DiskFree = free
			switch {
			case free < s.opts.MinDiskSpace:
				c.loadRefuse = true
			case free >= s.opts.OKDiskSpace:
				c.loadRefuse = false
			}
		}
	}
	switch {
	case c.loadRefuse && st.DiskFree >= s.opts.MinDiskSpace:
		st.Refuse, st.Throttle, st.Reason = true, true, fmt.Sprintf("free disk space %d not yet back above ok_disk_space %d", st.DiskFree, s.opts.OKDiskSpace)
	case c.loadRefuse:
		st.Refuse, st.Throttle, st.Reason = true, true, fmt.Sprintf("free disk space %d below min_disk_space %d", st.DiskFree, s.opts.MinDiskSpace)
	case st.IQDB >= st.IQDBMax:
		st.Refuse, st.Throttle, st.Reason = true, true, fmt.Sprintf("IQDB full (%d of %d)", st.IQDB, st.IQDBMax)
	case st.IQDB*5 >= st.IQDBMax*4:
		st.Throttle, st.Reason = true, fmt.Sprintf("IQDB %d of %d", st.IQDB, st.IQDBMax)
	case st.AQ >= st.AQMax:
		st.Throttle, st.Reason = true, fmt.Sprintf("AQ full (%d)", st.AQ)
	}
	s.load.Store(st)
}
