package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
	var known bool
	if err := s.call(ctx, func(c *core) {
		_, known = c.q.Message(txn)
		if known && rcpt != log.NoRcpt {
			_, known = c.q.Recipient(txn, rcpt)
		}
	}); err != nil {
		return err
	}
	if !known {
		return fmt.Errorf("%w: %s:%d", ErrUnknownMessage, txn, rcpt)
	}
	if _, err := s.opts.Log.Append(ctx, log.Event{Txn: txn, Rcpt: rcpt, Payload: p}); err != nil {
		return fmt.Errorf("scheduler: %s %s: %w", p.EventType(), txn, err)
	}
	return nil
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
		return log.Event{}, fmt.Errorf("%w: %s", ErrNotLive, target(txn, rcpt))
	}
	next := c.nextIndex(txn)
	c.reserve(txn, next+1)
	return log.Event{Txn: txn, Rcpt: rcpt, Payload: &log.Redirect{Operator: who, NewAddr: newAddr, NewRcpt: next}}, nil
}

// ErrNotLive is returned for a redirect of a recipient that is finished
// already, or of a message none of whose recipients is still queued.
var ErrNotLive = errors.New("scheduler: nothing queued to redirect")

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
