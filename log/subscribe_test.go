package log

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// receive reads n events from s, failing the test if they do not come.
func receive(t *testing.T, l *Log, s *Subscription, n int) []Event {
	t.Helper()
	out := make([]Event, 0, n)
	timeout := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case e, ok := <-s.Events():
			if !ok {
				t.Fatalf("subscription ended after %d of %d events: %v", len(out), n, s.Err())
			}
			require.LessOrEqual(t, e.Seq, l.LastSeq(), "delivered before it was durable")
			out = append(out, e)
		case <-timeout:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	return out
}

func requireConsecutive(t *testing.T, events []Event, first uint64) {
	t.Helper()
	for i, e := range events {
		require.Equal(t, first+uint64(i), e.Seq)
	}
}

func TestSubscriberSeesEveryEventOnceInOrder(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	past := appendFlow(t, l, newMailFlow(21), 100, finishedSet{})

	sub, err := l.Subscribe(ctx, 50)
	require.NoError(t, err)
	sub2, err := l.Subscribe(ctx, 0)
	require.NoError(t, err)

	var wg sync.WaitGroup
	var live [4][]Event
	for w := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			live[w] = appendFlow(t, l, newMailFlow(uint64(30+w)), 300, finishedSet{})
		}()
	}
	got := receive(t, l, sub, 51+4*300)
	wg.Wait()
	requireConsecutive(t, got, 50)
	require.Equal(t, past[49:], got[:51])
	bySeq := map[uint64]Event{}
	for _, events := range live {
		for _, e := range events {
			bySeq[e.Seq] = e
		}
	}
	for _, e := range got[51:] {
		require.Equal(t, bySeq[e.Seq], e)
	}
	got2 := receive(t, l, sub2, 100+4*300)
	requireConsecutive(t, got2, 1)

	// Nothing more is delivered until something more is appended.
	select {
	case e := <-sub.Events():
		t.Fatalf("extra event %d", e.Seq)
	default:
	}
	last, err := l.Append(ctx, everyType()[2])
	require.NoError(t, err)
	require.Equal(t, last, receive(t, l, sub, 1)[0].Seq)
}

// TestSlowSubscriberIsNotBufferedFor lets a subscriber fall far behind and
// then read: it gets everything, read from the store rather than held in
// memory for it.
func TestSlowSubscriberIsNotBufferedFor(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	sub, err := l.Subscribe(context.Background(), 1)
	require.NoError(t, err)
	want := appendFlow(t, l, newMailFlow(22), 5000, finishedSet{})
	got := receive(t, l, sub, 5000)
	require.Equal(t, want, got)
}

func TestSubscriptionEnds(t *testing.T) {
	l, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	appendFlow(t, l, newMailFlow(23), 10, finishedSet{})

	ctx, cancel := context.WithCancel(context.Background())
	sub, err := l.Subscribe(ctx, 1)
	require.NoError(t, err)
	receive(t, l, sub, 10)
	require.NoError(t, sub.Err(), "running")
	cancel()
	<-sub.Done()
	require.True(t, errors.Is(sub.Err(), context.Canceled))

	sub, err = l.Subscribe(context.Background(), 1)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	<-sub.Done()
	require.ErrorIs(t, sub.Err(), ErrClosed)
	_, err = l.Subscribe(context.Background(), 1)
	require.ErrorIs(t, err, ErrClosed)
}
