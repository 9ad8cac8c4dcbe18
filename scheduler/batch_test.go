package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/smx-mta/smx/log"
	"github.com/stretchr/testify/require"
)

// gatedLog is an EventLog whose appends wait for the test: each Append
// reports its events and blocks until the test answers with an error
// (nil: appended).
type gatedLog struct {
	calls   chan []log.Event
	answers chan error
}

func (g *gatedLog) Append(ctx context.Context, events ...log.Event) (uint64, error) {
	g.calls <- events
	return 0, <-g.answers
}

func (g *gatedLog) Get(uint64) (log.Event, error) { return log.Event{}, errors.New("not here") }

func released(txn string) []log.Event {
	return []log.Event{{Txn: txn, Rcpt: log.NoRcpt, Payload: &log.ContentReleased{Content: "c-" + txn}}}
}

// TestDurableBatcher: jobs added while an append is in progress go
// together in the next Append; their continuations run in order after
// it with its error; a job without events runs in its turn; once the
// context is done, queued jobs and later ones get its error.
func TestDurableBatcher(t *testing.T) {
	g := &gatedLog{calls: make(chan []log.Event), answers: make(chan error)}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{ctx: ctx}
	s.opts.Log = g
	b := newDurableBatcher(s)
	var mu sync.Mutex
	var order []string
	then := func(name string) func(error) {
		return func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				name += ": " + err.Error()
			}
			order = append(order, name)
		}
	}
	done := make(chan struct{})
	go func() { b.run(); close(done) }()

	b.add(released("T1"), then("T1"))
	require.Len(t, <-g.calls, 1, "the first job goes alone")
	// While T1's append waits, three more jobs queue up.
	b.add(released("T2"), then("T2"))
	b.add(nil, then("nothing"))
	b.add(released("T3"), then("T3"))
	g.answers <- nil
	batch := <-g.calls
	require.Len(t, batch, 2, "T2 and T3 in one append")
	require.Equal(t, "T2", batch[0].Txn)
	require.Equal(t, "T3", batch[1].Txn)
	g.answers <- errors.New("disk on fire")

	b.add(released("T4"), then("T4"))
	require.Len(t, <-g.calls, 1)
	cancel()
	g.answers <- context.Canceled
	<-done
	b.add(released("T5"), then("T5"))
	require.Equal(t, []string{"T1", "T2: disk on fire", "nothing", "T3: disk on fire", "T4: context canceled", "T5: context canceled"}, order)
}
