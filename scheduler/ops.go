package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// The operator's actions, for the daemon's control socket (smxctl). Each
// appends its event; the projection and the scheduler act on it when it
// comes back through the feed. rcpt is a recipient index, or log.NoRcpt
// for the whole message.

// ErrUnknownMessage is returned for an ss_ta not in the queue.
var ErrUnknownMessage = errors.New("scheduler: no such message in the queue")

func (s *Scheduler) operator(ctx context.Context, txn string, rcpt int32, p log.Payload) error {
	var ev log.Event
	var refused error
	if err := s.call(ctx, func(c *core) { ev, refused = c.operatorEvent(txn, rcpt, p) }); err != nil {
		return err
	}
	if refused != nil {
		return refused
	}
	if _, err := s.opts.Log.Append(ctx, ev); err != nil {
		if _, deleting := p.(*log.Delete); deleting {
			s.ungrant(txn, rcpt)
		}
		return fmt.Errorf("scheduler: %s %s: %w", p.EventType(), target(txn, rcpt), err)
	}
	return nil
}

// operatorEvent returns the event of an operator's action p on recipient
// rcpt of txn (log.NoRcpt: the whole message), or why it is refused: the
// message or recipient is not in the queue, or, for a delete, an attempt
// is in progress (see grant).
func (c *core) operatorEvent(txn string, rcpt int32, p log.Payload) (log.Event, error) {
	m, known := c.q.Message(txn)
	// Something to delete: a recipient still queued, or a DSN still owed
	// (a delete cancels it).
	pending := m.Live > 0 || m.DSNOwed > 0
	if known && rcpt != log.NoRcpt {
		var r projections.Recipient
		r, known = c.q.Recipient(txn, rcpt)
		pending = r.State.Live() || r.DSNOwed
	}
	if !known {
		return log.Event{}, fmt.Errorf("%w: %s", ErrUnknownMessage, target(txn, rcpt))
	}
	if _, deleting := p.(*log.Delete); deleting {
		if !pending {
			return log.Event{}, fmt.Errorf("%w to delete: %s", ErrNotLive, target(txn, rcpt))
		}
		if err := c.grant(txn, rcpt); err != nil {
			return log.Event{}, err
		}
	}
	return log.Event{Txn: txn, Rcpt: rcpt, Payload: p}, nil
}

// ErrInFlight is returned for a delete or redirect of a recipient SMAR is
// resolving or a delivery agent is delivering to: the outcome of that
// work is still to be logged, and a delete or redirect before it would
// make the recipient's history contradict itself. Hold the message (no
// new attempt starts for it) and try again when the attempt has ended.
var ErrInFlight = errors.New("scheduler: a resolution or delivery attempt is in progress for")

// grant clears the way for an operator's delete or redirect of recipient
// rcpt of txn (log.NoRcpt: every recipient of the message). It refuses
// with ErrInFlight when one of them is being resolved or delivered (or
// an event the scheduler appended for it is on its way to the log);
// otherwise it puts back those waiting in AQ and keeps them out of AQ
// until the operator's event comes back through the feed, or until
// ungrant when the event could not be appended.
func (c *core) grant(txn string, rcpt int32) error {
	var busy []string
	for k, e := range c.aq {
		if k.txn == txn && (rcpt == log.NoRcpt || k.rcpt == rcpt) && e.phase != phaseReady {
			busy = append(busy, target(k.txn, k.rcpt))
		}
	}
	if len(busy) > 0 {
		slices.Sort(busy)
		return fmt.Errorf("%w %s", ErrInFlight, strings.Join(busy, ", "))
	}
	c.untakeAll(txn, rcpt)
	c.operating[key{txn, rcpt}]++
	return nil
}

// ungrant ends what grant began, when the operator's event is applied or
// could not be appended.
func (c *core) ungrant(txn string, rcpt int32) {
	k := key{txn, rcpt}
	if c.operating[k] <= 1 {
		delete(c.operating, k)
		return
	}
	c.operating[k]--
}

// ungrant asks the loop to end a grant whose event was not appended.
func (s *Scheduler) ungrant(txn string, rcpt int32) {
	// The loop drains calls until it ends; a context of its own keeps a
	// cancelled request from leaving the recipients out of AQ.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.call(ctx, func(c *core) { c.ungrant(txn, rcpt) })
}

// Hold stops the delivery of a message or recipient until Release.
func (s *Scheduler) Hold(ctx context.Context, txn string, rcpt int32, who log.Operator) error {
	return s.operator(ctx, txn, rcpt, &log.Hold{Operator: who})
}

// Release undoes Hold.
func (s *Scheduler) Release(ctx context.Context, txn string, rcpt int32, who log.Operator) error {
	return s.operator(ctx, txn, rcpt, &log.Release{Operator: who})
}

// Delete removes a message or recipient from the queue without a DSN.
func (s *Scheduler) Delete(ctx context.Context, txn string, rcpt int32, who log.Operator) error {
	return s.operator(ctx, txn, rcpt, &log.Delete{Operator: who})
}

// Requeue makes a message or recipient due now, forgetting the host status
// of its destinations (a flush of one message).
func (s *Scheduler) Requeue(ctx context.Context, txn string, rcpt int32, who log.Operator) error {
	return s.operator(ctx, txn, rcpt, &log.Requeue{Operator: who})
}

// Redirect sends recipient rcpt of txn to newAddr instead: the recipient
// is finished and a new one takes its place in the same message. With
// rcpt log.NoRcpt it redirects the whole message: every live recipient is
// finished and one new recipient at newAddr takes all their places (see
// log.Redirect). A recipient, or a message, with nothing live left to
// redirect is refused with ErrNotLive.
func (s *Scheduler) Redirect(ctx context.Context, txn string, rcpt int32, newAddr string, who log.Operator) error {
	var ev log.Event
	var refused error
	if err := s.call(ctx, func(c *core) { ev, refused = c.redirect(txn, rcpt, newAddr, who) }); err != nil {
		return err
	}
	if refused != nil {
		return refused
	}
	if _, err := s.opts.Log.Append(ctx, ev); err != nil {
		s.ungrant(txn, rcpt)
		return fmt.Errorf("scheduler: redirect %s: %w", target(txn, rcpt), err)
	}
	return nil
}

// redirect returns the Redirect event of an operator's redirect of
// recipient rcpt of txn (log.NoRcpt: the whole message) to newAddr, and
// reserves the index of the new recipient until the event comes back
// through the feed.
func (c *core) redirect(txn string, rcpt int32, newAddr string, who log.Operator) (log.Event, error) {
	if newAddr == "" {
		return log.Event{}, errors.New("scheduler: redirect needs an address")
	}
	var known, live bool
	if rcpt == log.NoRcpt {
		var m projections.Message
		m, known = c.q.Message(txn)
		live = known && m.Live > 0
	} else {
		var r projections.Recipient
		r, known = c.q.Recipient(txn, rcpt)
		live = known && r.State.Live()
	}
	switch {
	case !known:
		return log.Event{}, fmt.Errorf("%w: %s", ErrUnknownMessage, target(txn, rcpt))
	case !live:
		return log.Event{}, fmt.Errorf("%w to redirect: %s", ErrNotLive, target(txn, rcpt))
	}
	if err := c.grant(txn, rcpt); err != nil {
		return log.Event{}, err
	}
	next := c.nextIndex(txn)
	c.reserve(txn, next+1)
	return log.Event{Txn: txn, Rcpt: rcpt, Payload: &log.Redirect{Operator: who, NewAddr: newAddr, NewRcpt: next}}, nil
}

// ErrNotLive is returned for a redirect or delete of a recipient that is
// finished already (for a delete: and owes no DSN), or of a message none
// of whose recipients is still queued.
var ErrNotLive = errors.New("scheduler: nothing queued")

// target names a message (ss_ta) or one of its recipients (ss_ta:index)
// as smxctl takes them.
func target(txn string, rcpt int32) string {
	if rcpt == log.NoRcpt {
		return txn
	}
	return fmt.Sprintf("%s:%d", txn, rcpt)
}

// FlushDomain requeues every deferred recipient whose address is in
// domain or a subdomain of it (sendmail's "mailq -qR"). It returns how many
// it requeued.
func (s *Scheduler) FlushDomain(ctx context.Context, domain string, who log.Operator) (int, error) {
	domain = strings.ToLower(strings.TrimPrefix(domain, "@"))
	return s.flush(ctx, who, func(d string) bool { return d == domain || strings.HasSuffix(d, "."+domain) })
}

// Flush implements the SMTP server's ETRN hook (RFC 1985): "@domain"
// requeues the deferred recipients of domain and its subdomains, "node"
// those of that domain only, and "#queue" every deferred recipient.
func (s *Scheduler) Flush(ctx context.Context, arg string) error {
	who := log.Operator{User: "ETRN", Reason: arg}
	var err error
	switch {
	case strings.HasPrefix(arg, "#"):
		_, err = s.flush(ctx, who, func(string) bool { return true })
	case strings.HasPrefix(arg, "@"):
		_, err = s.FlushDomain(ctx, arg, who)
	default:
		node := strings.ToLower(arg)
		_, err = s.flush(ctx, who, func(d string) bool { return d == node })
	}
	return err
}

// flush requeues the deferred recipients whose domain match accepts.
func (s *Scheduler) flush(ctx context.Context, who log.Operator, match func(domain string) bool) (int, error) {
	var events []log.Event
	if err := s.call(ctx, func(c *core) {
		// One pass without building lists: the queue may hold a million
		// recipients, and ETRN comes from the network.
		c.q.Scan(func(_ projections.Message, rcpts []projections.Recipient) bool {
			for _, r := range rcpts {
				if r.State != projections.StateDeferred {
					continue
				}
				_, d, ok := strings.Cut(r.Addr, "@")
				if ok && match(strings.ToLower(d)) {
					events = append(events, log.Event{Txn: r.Txn, Rcpt: r.Rcpt, Payload: &log.Requeue{Operator: who}})
				}
			}
			return true
		})
	}); err != nil {
		return 0, err
	}
	if len(events) == 0 {
		return 0, nil
	}
	if _, err := s.opts.Log.Append(ctx, events...); err != nil {
		return 0, fmt.Errorf("scheduler: flush: %w", err)
	}
	return len(events), nil
}

// Conns describes the outgoing connection state per destination IP: the
// slow start window, its maximum, open and busy sessions and transactions
// waiting, one line each.
func (s *Scheduler) Conns(ctx context.Context) (string, error) {
	var out string
	err := s.call(ctx, func(c *core) { out = c.describeConns() })
	return out, err
}
