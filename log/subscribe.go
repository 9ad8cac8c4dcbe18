package log

import (
	"context"
	"fmt"
)

// subscriptionBatch is how many events a subscription reads from the store
// at a time, and subscriptionBuffer the capacity of its channel: together
// they bound what a slow subscriber costs in memory. A subscriber that falls
// behind is not buffered for; it reads from the store when it catches up.
const (
	subscriptionBatch  = 256
	subscriptionBuffer = 64
)

// Subscription delivers the events of the log in order as they become
// durable.
type Subscription struct {
	ch   chan Event
	done chan struct{}
	err  error
}

// Subscribe returns a subscription that delivers every event from sequence
// number from (1 if from is 0) on, each once and in order, and only once it
// is durable: first those already in the log, then each new one as its
// commit is synced. The subscription ends when ctx is done, when the Log is
// closed, or at an error such as a damaged record; Events is closed then and
// Err says why. Each string of a delivered event is an allocation of its
// own, so keeping one keeps nothing else.
func (l *Log) Subscribe(ctx context.Context, from uint64) (*Subscription, error) {
	if l.readOnly {
		return nil, ErrReadOnly
	}
	l.commitMu.Lock()
	if l.closed {
		l.commitMu.Unlock()
		return nil, ErrClosed
	}
	l.subs.Add(1)
	l.commitMu.Unlock()
	if from == 0 {
		from = 1
	}
	s := &Subscription{ch: make(chan Event, subscriptionBuffer), done: make(chan struct{})}
	go func() {
		defer l.subs.Done()
		defer close(s.done)
		defer close(s.ch)
		s.err = l.feed(ctx, s.ch, from)
	}()
	return s, nil
}

// Events returns the channel the events arrive on.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Err returns why the subscription ended: ctx's error, ErrClosed, or a read
// error. It returns nil while the subscription is running.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Done returns a channel that is closed when the subscription has ended.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// feed sends the events from next on to ch until ctx is done or the Log is
// closed.
func (l *Log) feed(ctx context.Context, ch chan<- Event, next uint64) error {
	batch := make([]Event, 0, subscriptionBatch)
	for {
		// Take the notification channel before reading durable, so that
		// an advance between the two is not missed.
		changed := l.durableChanged()
		durable := l.durable.Load()
		if next > durable {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return ctx.Err()
			case <-l.closing:
				return ErrClosed
			}
		}
		end := min(durable, next+subscriptionBatch-1)
		it := l.iter(next, end)
		// Subscribers such as the scheduler keep strings of the events
		// for a while (destinations, reasons, ids): each its own
		// allocation, so that none keeps a whole record alive.
		it.separate = true
		batch = batch[:0]
		for it.Next() {
			batch = append(batch, it.Event())
		}
		err := it.Err()
		it.Close()
		if err != nil {
			return fmt.Errorf("log: subscription at %d: %w", next, err)
		}
		for _, e := range batch {
			select {
			case ch <- e:
			case <-ctx.Done():
				return ctx.Err()
			case <-l.closing:
				return ErrClosed
			}
		}
		next = end + 1
	}
}
