package log

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
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

// heapAlloc returns the bytes of live heap objects after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestKeptStringsKeepNoRecord keeps one short string (the destination) of
// each of many events with a long reason, as the scheduler keeps the
// destinations and reasons of what it reads from its subscription: events
// from Subscribe and Get must not keep their whole records alive through
// it. Iter, made for folding, shares one copy of the record among the
// strings of an event; the same measurement of it shows what is at stake.
func TestKeptStringsKeepNoRecord(t *testing.T) {
	const n, reasonLen = 4000, 2000
	l := openTest(t, t.TempDir(), Options{})
	reason := strings.Repeat("r", reasonLen)
	events := make([]Event, n)
	for i := range events {
		events[i] = Event{Txn: fmt.Sprintf("S%016x00", i), Rcpt: 0, Payload: &RcptDeferred{
			Reason: reason, Destination: fmt.Sprintf("esmtp:[192.0.2.%d]:25", i%250),
		}}
	}
	for i := 0; i < n; i += 500 {
		_, err := l.Append(context.Background(), events[i:i+500]...)
		require.NoError(t, err)
	}
	keep := func(e Event) string { return e.Payload.(*RcptDeferred).Destination }

	// What a kept destination costs read each way, per event.
	retained := func(read func() []string) float64 {
		before := heapAlloc()
		kept := read()
		require.Len(t, kept, n)
		after := heapAlloc()
		runtime.KeepAlive(kept)
		return (float64(after) - float64(before)) / n
	}
	subscribed := retained(func() []string {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sub, err := l.Subscribe(ctx, 1)
		require.NoError(t, err)
		var kept []string
		for _, e := range receive(t, l, sub, n) {
			kept = append(kept, keep(e))
		}
		return kept
	})
	got := retained(func() []string {
		var kept []string
		for seq := uint64(1); seq <= n; seq++ {
			e, err := l.Get(seq)
			require.NoError(t, err)
			kept = append(kept, keep(e))
		}
		return kept
	})
	iterated := retained(func() []string {
		var kept []string
		for _, e := range readAll(t, l, 1) {
			kept = append(kept, keep(e))
		}
		return kept
	})
	t.Logf("bytes kept per event: Subscribe %.0f, Get %.0f, Iter %.0f", subscribed, got, iterated)
	require.Greater(t, iterated, float64(reasonLen), "the measurement does not see a kept record")
	require.Less(t, subscribed, float64(reasonLen)/4, "Subscribe: a kept string keeps its record")
	require.Less(t, got, float64(reasonLen)/4, "Get: a kept string keeps its record")
}
