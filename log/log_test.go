package log

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a clock the test drives.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openTest(t *testing.T, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// readAll reads the whole log and fails the test on an error.
func readAll(t *testing.T, l *Log, from uint64) []Event {
	t.Helper()
	it := l.Iter(from)
	defer it.Close()
	var out []Event
	for it.Next() {
		out = append(out, it.Event())
	}
	require.NoError(t, it.Err())
	return out
}

func TestAppendAndReadEveryType(t *testing.T) {
	clock := newFakeClock()
	l := openTest(t, t.TempDir(), Options{Clock: clock.Now})
	ctx := context.Background()

	want := everyType()
	want[3].Time = time.Time{} // the log fills it in from the clock
	for i := range want {
		last, err := l.Append(ctx, want[i])
		require.NoError(t, err)
		require.Equal(t, uint64(i+1), last)
		want[i].Seq = last
		if want[i].Time.IsZero() {
			want[i].Time = clock.Now()
		}
	}
	require.Equal(t, uint64(len(want)), l.LastSeq())

	require.Equal(t, want, readAll(t, l, 0))
	require.Equal(t, want[5:], readAll(t, l, 6))
	for _, w := range want {
		got, err := l.Get(w.Seq)
		require.NoError(t, err)
		require.Equal(t, w, got)
	}
	_, err := l.Get(uint64(len(want) + 1))
	require.ErrorIs(t, err, ErrNotFound)
	_, err = l.Get(0)
	require.ErrorIs(t, err, ErrNotFound)
	require.Empty(t, readAll(t, l, uint64(len(want)+1)))
}

func TestAppendAssignsSeqAndTimeInPlace(t *testing.T) {
	clock := newFakeClock()
	l := openTest(t, t.TempDir(), Options{Clock: clock.Now})
	events := []Event{
		{Txn: "S1", Rcpt: 0, Payload: &RcptDelivered{Code: 250}},
		{Txn: "S1", Rcpt: 1, Time: t0.Add(time.Hour), Payload: &RcptDelivered{Code: 250}},
	}
	last, err := l.Append(context.Background(), events...)
	require.NoError(t, err)
	require.Equal(t, uint64(2), last)
	require.Equal(t, uint64(1), events[0].Seq)
	require.Equal(t, uint64(2), events[1].Seq)
	require.Equal(t, clock.Now(), events[0].Time)
	require.Equal(t, t0.Add(time.Hour), events[1].Time)
}

func TestAppendIsAllOrNothing(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	ctx := context.Background()
	_, err := l.Append(ctx, everyType()[:3]...)
	require.NoError(t, err)

	// A bad event anywhere in the call means none of them is appended.
	bad := append(everyType()[:2], Event{Txn: "S2"}, everyType()[5])
	_, err = l.Append(ctx, bad...)
	require.Error(t, err)
	require.Contains(t, err.Error(), "event 3 of 4")
	require.Equal(t, uint64(3), l.LastSeq())

	last, err := l.Append(ctx, everyType()[4])
	require.NoError(t, err)
	require.Equal(t, uint64(4), last, "a failed append leaves no gap")
	require.Len(t, readAll(t, l, 1), 4)
}

// TestConcurrentAppendsAreAtomicAndGapless appends from many goroutines,
// each call several events of one transaction, while a subscriber watches:
// every append's events must be consecutive and become visible together.
func TestConcurrentAppendsAreAtomicAndGapless(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := l.Subscribe(ctx, 1)
	require.NoError(t, err)

	const writers, calls = 16, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range calls {
				n := 1 + (w+c)%4
				events := make([]Event, n)
				for i := range events {
					events[i] = Event{Txn: fmt.Sprintf("w%d-c%d", w, c), Rcpt: int32(i), Payload: &RcptDelivered{Code: 250 + n}}
				}
				last, err := l.Append(ctx, events...)
				if err != nil {
					t.Error(err)
					return
				}
				if events[0].Seq != last-uint64(n)+1 {
					t.Errorf("append of %d got seqs %d..%d", n, events[0].Seq, last)
				}
				// Visible as soon as Append returns.
				if got := l.LastSeq(); got < last {
					t.Errorf("LastSeq %d < appended %d", got, last)
				}
			}
		}()
	}
	wg.Wait()
	total := l.LastSeq()

	var got []Event
	for len(got) < int(total) {
		select {
		case e := <-sub.Events():
			got = append(got, e)
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber got %d of %d events", len(got), total)
		}
	}
	for i := 0; i < len(got); {
		e := got[i]
		require.Equal(t, uint64(i+1), e.Seq)
		n := e.Payload.(*RcptDelivered).Code - 250
		for j := 0; j < n; j++ {
			require.Equal(t, e.Txn, got[i+j].Txn, "append of %s split", e.Txn)
			require.Equal(t, int32(j), got[i+j].Rcpt)
		}
		i += n
	}
	require.Equal(t, got, readAll(t, l, 1))
}

func TestGaplessAfterReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	flow := newMailFlow(7)
	var want []Event
	for round := range 3 {
		l, err := Open(dir, Options{MemTableSize: 1 << 20})
		require.NoError(t, err)
		require.Equal(t, uint64(len(want)), l.LastSeq(), "round %d", round)
		for range 300 {
			e := flow.Event()
			_, err := l.Append(ctx, e)
			require.NoError(t, err)
			want = append(want, e)
		}
		require.NoError(t, l.Close())
	}
	l := openTest(t, dir, Options{})
	got := readAll(t, l, 1)
	require.Len(t, got, len(want))
	for i := range got {
		require.Equal(t, uint64(i+1), got[i].Seq)
		want[i].Seq = got[i].Seq
		require.Equal(t, want[i].Txn, got[i].Txn)
		require.Equal(t, want[i].Payload, got[i].Payload)
	}
}

func TestAppendAfterClose(t *testing.T) {
	l, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	require.NoError(t, l.Close())
	_, err = l.Append(context.Background(), everyType()[0])
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, l.Close(), ErrClosed)
	_, err = l.Get(1)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, l.Iter(1).Err(), ErrClosed)
	_, err = l.LatestSnapshot(nil)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, l.SaveSnapshot(0, nil), ErrClosed)
	_, err = l.Archive(context.Background(), nil)
	require.ErrorIs(t, err, ErrClosed)
}

func TestAppendRefusesOversizedEvent(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	huge := Event{Txn: "S1", Payload: &RcptFailed{Reason: string(make([]byte, maxRecordSize))}}
	_, err := l.Append(context.Background(), huge)
	require.ErrorContains(t, err, "more than")
	require.Equal(t, uint64(0), l.LastSeq())
}

func TestAppendCancelledBeforeCommit(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Append(ctx, everyType()[0])
	require.True(t, errors.Is(err, context.Canceled))
	require.Equal(t, uint64(0), l.LastSeq())
}

// TestMaxCommitDelay checks that with a commit delay, concurrent appends
// share syncs: with a pause of 5ms after each sync, 32 appenders looping
// for 200 appends each need far fewer syncs than appends.
func TestMaxCommitDelay(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{MaxCommitDelay: 5 * time.Millisecond})
	ctx := context.Background()
	start := l.Stats().WALSyncs
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if _, err := l.Append(ctx, Event{Txn: fmt.Sprint(i), Payload: &RcptDelivered{}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n := l.Stats().WALSyncs - start
	require.Equal(t, uint64(32*200), l.LastSeq())
	require.Positive(t, n)
	require.Less(t, n, uint64(32*200/4), "%d syncs for %d appends", n, 32*200)
	t.Logf("%d syncs for %d appends", n, 32*200)
}

// TestStatsCountAppendsAndSyncs checks the figures Stats gives the
// daemon's metrics: one after the other, every append waits for a sync of
// its own, so there are at least as many WAL syncs as appends, and they
// took time.
func TestStatsCountAppendsAndSyncs(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	require.NoError(t, err)
	ctx := context.Background()
	before := l.Stats()
	for range 10 {
		_, err := l.Append(ctx, everyType()[1])
		require.NoError(t, err)
	}
	_, err = l.Append(ctx, everyType()[:5]...)
	require.NoError(t, err)
	_, err = l.Append(ctx, Event{Payload: nil})
	require.Error(t, err, "a failed append is not counted")
	st := l.Stats()
	require.Equal(t, uint64(11), st.Appends-before.Appends)
	require.Equal(t, uint64(15), st.Events-before.Events)
	require.GreaterOrEqual(t, st.WALSyncs-before.WALSyncs, uint64(11))
	require.Positive(t, st.WALSyncTime-before.WALSyncTime)
	require.NoError(t, l.Close())

	ro, err := OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	defer ro.Close()
	require.Equal(t, Stats{}, ro.Stats(), "a read-only log syncs nothing")
}

// TestMaxOpenTAsSkipsThePause checks the rule of the sync pause: the
// delay, unless MaxOpenTAs appends are waiting.
func TestMaxOpenTAsSkipsThePause(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{MaxCommitDelay: time.Hour, MaxOpenTAs: 3})
	require.Equal(t, time.Hour, l.syncPause())
	l.syncWaiters.Store(2)
	require.Equal(t, time.Hour, l.syncPause())
	l.syncWaiters.Store(3)
	require.Equal(t, time.Duration(0), l.syncPause())
	l.syncWaiters.Store(0)
}
