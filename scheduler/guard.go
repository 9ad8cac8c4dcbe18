package scheduler

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// Drain stops the scheduler from starting anything new (resolutions,
// deliveries, DSNs, releases, timeouts) and waits until what is in flight
// has finished or ctx is done: the daemon's graceful stop, so that
// delivery attempts end with their outcome in the log rather than being
// cut off and repeated after the restart. Finished means appended and
// applied: when Drain returns, the projection holds every event the
// scheduler appended, so a Snapshot taken then covers them. Run keeps
// applying events until its context is cancelled.
func (s *Scheduler) Drain(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	drained := make(chan struct{})
	s.draining.Store(true)
	if err := s.call(ctx, func(c *core) {
		c.draining = true
		c.drained = drained
		c.checkDrained()
	}); err != nil {
		return err
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkDrained closes drained once nothing is in flight and every event the
// scheduler appended has come back through the feed.
func (c *core) checkDrained() {
	if c.drained == nil || c.delivering > 0 || c.resolvers > 0 || len(c.dsnInProgress) > 0 || len(c.releasing) > 0 {
		return
	}
	if c.appendsPending != nil && c.appendsPending() {
		return
	}
	if c.appendedSeq != nil && c.q.Seq() < c.appendedSeq() {
		return
	}
	close(c.drained)
	c.drained = nil
}

// A panic in one worker (a delivery, a resolution, a DSN) ends that piece
// of work and nothing else: it is logged with the ids it concerns, its
// recipients are deferred as after a temporary failure, and the scheduler
// goes on.

// recoverDelivery is deferred around one delivery transaction.
func (s *Scheduler) recoverDelivery(job *deliveryJob) {
	r := recover()
	if r == nil {
		return
	}
	reason := fmt.Sprintf("internal error in delivery: %v", r)
	s.opts.Logger.Error("scheduler: delivery panicked", "txn", job.msg.Txn, "dest", job.dest, "panic", r, "stack", string(debug.Stack()))
	if job.session != nil {
		job.session.Close()
	}
	events := s.panicDeferrals(job.msg.Txn, job.msg.ReceivedAt, job.rcpts, reason)
	if _, err := s.opts.Log.Append(s.ctx, events...); err != nil {
		s.opts.Logger.Error("scheduler: append deferrals after a panic", "txn", job.msg.Txn, "err", err)
	}
	s.opts.MailLog.Line(2).Func("q_delivery_panic").SSTa(job.msg.Txn).Str("dest", job.dest).Str("error", reason).Write()
}

// recoverResolve is deferred around one resolution job; the recipients
// are deferred instead of resolved.
func (s *Scheduler) recoverResolve(job *resolveJob, events *[]log.Event) {
	r := recover()
	if r == nil {
		return
	}
	reason := fmt.Sprintf("internal error in resolution: %v", r)
	s.opts.Logger.Error("scheduler: resolution panicked", "txn", job.txn, "panic", r, "stack", string(debug.Stack()))
	*events = s.panicDeferrals(job.txn, job.receivedAt, job.rcpts, reason)
	s.opts.MailLog.Line(2).Func("q_resolve_panic").SSTa(job.txn).Str("error", reason).Write()
}

// panicDeferrals defers rcpts of txn with reason, or expires them when
// their time is up.
func (s *Scheduler) panicDeferrals(txn string, receivedAt time.Time, rcpts []projections.Recipient, reason string) []log.Event {
	now := s.opts.Clock.Now()
	next, expired := s.core.retry.next(now, receivedAt)
	events := make([]log.Event, 0, len(rcpts))
	for _, r := range rcpts {
		var p log.Payload = &log.RcptDeferred{NextTry: next, Reason: reason, Destination: r.Destination}
		if expired {
			p = &log.RcptExpired{LastReason: reason, Enhanced: "4.4.7"}
		}
		events = append(events, log.Event{Txn: txn, Rcpt: r.Rcpt, Time: now, Payload: p})
	}
	return events
}

// recoverAs turns a panic in a worker into *err.
func recoverAs(s *Scheduler, what, txn string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	s.opts.Logger.Error("scheduler: "+what+" panicked", "txn", txn, "panic", r, "stack", string(debug.Stack()))
	*err = fmt.Errorf("internal error in %s: %v", what, r)
}
