package log

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

// finishedSet answers FinishedFunc from a map of finished transactions.
type finishedSet map[string]time.Time

func (f finishedSet) finished(txn string) (time.Time, bool) {
	at, ok := f[txn]
	return at, ok
}

// appendFlow appends n events of mail traffic and returns them; the
// messages with a deferred recipient are left out of done, the others are
// finished at the time of their last event.
func appendFlow(t *testing.T, l *Log, flow *mailFlow, n int, done finishedSet) []Event {
	t.Helper()
	out := make([]Event, n)
	deferred := map[string]bool{}
	for i := range out {
		out[i] = flow.Event()
	}
	// In calls of up to 64 events, which keeps the tests fast.
	for i := 0; i < n; i += 64 {
		if _, err := l.Append(context.Background(), out[i:min(i+64, n)]...); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range out {
		if _, ok := e.Payload.(*RcptDeferred); ok {
			deferred[e.Txn] = true
		}
	}
	for _, e := range out {
		if !deferred[e.Txn] {
			done[e.Txn] = e.Time
		}
	}
	return out
}

func requireSameEvents(t *testing.T, want, got []Event) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].Seq, got[i].Seq, "event %d", i)
		require.Equal(t, want[i], got[i], "event %d", i)
	}
}

func TestArchiveAndLiveReadAsOneSequence(t *testing.T) {
	dir, archiveDir := t.TempDir(), t.TempDir() // the archive "on another disk"
	clock := newFakeClock()
	opts := Options{Clock: clock.Now, ArchiveDir: archiveDir, ArchiveAfter: time.Hour, SegmentSize: 16 << 10}
	l := openTest(t, dir, opts)
	flow := newMailFlow(3)
	done := finishedSet{}
	want := appendFlow(t, l, flow, 2000, done)
	ctx := context.Background()

	// Nothing is old enough yet.
	stats, err := l.Archive(ctx, done.finished)
	require.NoError(t, err)
	require.Zero(t, stats.Archived)

	// An hour later every finished message goes.
	clock.Advance(2 * time.Hour)
	flow.now = clock.Now()
	want = append(want, appendFlow(t, l, flow, 100, finishedSet{})...) // new, stays live
	stats, err = l.Archive(ctx, done.finished)
	require.NoError(t, err)
	require.Greater(t, stats.Archived, 1000)
	require.Greater(t, len(stats.Segments), 1, "SegmentSize splits the archive")
	require.Less(t, stats.Scanned, len(want), "the pass stops at the first recent event")

	// The live log has holes now; readers do not see them.
	live := 0
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: eventKeyEnd})
	require.NoError(t, err)
	for ok := it.First(); ok; ok = it.Next() {
		live++
	}
	require.NoError(t, it.Close())
	require.Equal(t, len(want)-stats.Archived, live)

	requireSameEvents(t, want, readAll(t, l, 1))
	requireSameEvents(t, want[777:], readAll(t, l, 778))
	for _, seq := range []uint64{1, 2, 500, 1999, 2000, 2050} {
		got, err := l.Get(seq)
		require.NoError(t, err)
		require.Equal(t, want[seq-1], got)
	}

	// The stragglers finish later and go into a segment whose range
	// overlaps the earlier ones.
	for _, e := range want[:2000] {
		if _, ok := done[e.Txn]; !ok {
			done[e.Txn] = clock.Now()
		}
	}
	clock.Advance(2 * time.Hour)
	stats2, err := l.Archive(ctx, done.finished)
	require.NoError(t, err)
	finishedEvents := 0
	for _, e := range want {
		if _, ok := done[e.Txn]; ok {
			finishedEvents++
		}
	}
	require.Equal(t, finishedEvents, stats.Archived+stats2.Archived)
	requireSameEvents(t, want, readAll(t, l, 1))

	// Reopen: the same sequence, and appends continue after it.
	require.NoError(t, l.Close())
	l = openTest(t, dir, opts)
	requireSameEvents(t, want, readAll(t, l, 1))
	last, err := l.Append(ctx, everyType()[0])
	require.NoError(t, err)
	require.Equal(t, uint64(len(want)+1), last)

	// A read-only opener finds the archive through the recorded path.
	ro, err := OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	defer ro.Close()
	requireSameEvents(t, want, readAll(t, ro, 1)[:len(want)])
}

func TestArchiveEverythingKeepsLastSeq(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	opts := Options{Clock: clock.Now, ArchiveAfter: time.Minute}
	l := openTest(t, dir, opts)
	var want []Event
	for i := range 50 {
		e := Event{Txn: "S1", Rcpt: int32(i), Payload: &RcptDelivered{Code: 250}}
		_, err := l.Append(context.Background(), e)
		require.NoError(t, err)
		e.Seq, e.Time = uint64(i+1), clock.Now()
		want = append(want, e)
	}
	clock.Advance(time.Hour)
	stats, err := l.Archive(context.Background(), func(string) (time.Time, bool) { return t0, true })
	require.NoError(t, err)
	require.Equal(t, 50, stats.Archived)
	require.NoError(t, l.Close())

	l = openTest(t, dir, opts)
	require.Equal(t, uint64(50), l.LastSeq(), "the last sequence number survives in the archive")
	requireSameEvents(t, want, readAll(t, l, 1))
	last, err := l.Append(context.Background(), everyType()[1])
	require.NoError(t, err)
	require.Equal(t, uint64(51), last)
}

// TestArchiveCrashBetweenSegmentAndCommit covers the two states a crash
// in an Archive pass can leave: a sealed segment without its record (the
// next Open removes it) and a recorded segment whose events are still live
// (readers skip the duplicates).
func TestArchiveCrashBetweenSegmentAndCommit(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	flow := newMailFlow(5)
	want := appendFlow(t, l, flow, 200, finishedSet{})

	// A segment with events 20-80, written and registered, with the live
	// copies left in place.
	w, err := createSegment(l.archive.dir, l.archive.nextNum(), mustZstdEncoder(t))
	require.NoError(t, err)
	for seq := uint64(20); seq <= 80; seq++ {
		k := makeEventKey(seq)
		v, closer, err := l.db.Get(k[:])
		require.NoError(t, err)
		require.NoError(t, w.add(seq, v))
		closer.Close()
	}
	meta, err := w.finish()
	require.NoError(t, err)
	require.NoError(t, l.db.Set(segmentMetaKey(meta.num), meta.encode(), pebble.Sync))

	// And an orphan: a sealed segment of events 100-150, which are still
	// live, that the crash kept from being recorded.
	w, err = createSegment(l.archive.dir, meta.num+1, mustZstdEncoder(t))
	require.NoError(t, err)
	for seq := uint64(100); seq <= 150; seq++ {
		k := makeEventKey(seq)
		v, closer, err := l.db.Get(k[:])
		require.NoError(t, err)
		require.NoError(t, w.add(seq, v))
		closer.Close()
	}
	orphanMeta, err := w.finish()
	require.NoError(t, err)
	orphan := filepath.Join(l.archive.dir, segmentName(orphanMeta.num))
	require.FileExists(t, orphan)
	require.NoError(t, l.Close())

	l = openTest(t, dir, Options{})
	_, err = os.Stat(orphan)
	require.True(t, os.IsNotExist(err), "orphan segment not removed")
	requireSameEvents(t, want, readAll(t, l, 1))
	requireSameEvents(t, want[49:], readAll(t, l, 50))
}

// TestArchiveDirSharedWithAnotherLog replaces a log by a fresh one that
// uses the same archive directory, as after smxctl reconstruct with the
// default archive_directory (beside the event log directory, not in it):
// the fresh log must neither remove the old log's segments as unfinished
// nor overwrite them with its own, and each log still reads all of its
// events.
func TestArchiveDirSharedWithAnotherLog(t *testing.T) {
	archiveDir := filepath.Join(t.TempDir(), "archive")
	clock := newFakeClock()
	opts := Options{ArchiveDir: archiveDir, Clock: clock.Now, ArchiveAfter: time.Minute}

	oldDir := t.TempDir()
	old := openTest(t, oldDir, opts)
	done := finishedSet{}
	oldEvents := appendFlow(t, old, newMailFlow(1), 300, done)
	clock.Advance(time.Hour)
	stats, err := old.Archive(context.Background(), done.finished)
	require.NoError(t, err)
	require.NotEmpty(t, stats.Segments)
	require.NoError(t, old.Close())
	oldFiles := map[string][]byte{}
	for _, name := range stats.Segments {
		b, err := os.ReadFile(filepath.Join(archiveDir, name))
		require.NoError(t, err)
		oldFiles[name] = b
	}

	fresh := openTest(t, t.TempDir(), opts)
	done = finishedSet{}
	freshEvents := appendFlow(t, fresh, newMailFlow(2), 300, done)
	clock.Advance(time.Hour)
	freshStats, err := fresh.Archive(context.Background(), done.finished)
	require.NoError(t, err)
	require.NotEmpty(t, freshStats.Segments)
	for _, name := range freshStats.Segments {
		_, clash := oldFiles[name]
		require.False(t, clash, "the fresh log reused the old log's segment name %s", name)
	}
	requireSameEvents(t, freshEvents, readAll(t, fresh, 1))
	require.NoError(t, fresh.Close())
	for name, b := range oldFiles {
		got, err := os.ReadFile(filepath.Join(archiveDir, name))
		require.NoError(t, err, "segment %s of the old log is gone", name)
		require.True(t, bytes.Equal(b, got), "segment %s of the old log changed", name)
	}

	old = openTest(t, oldDir, opts)
	requireSameEvents(t, oldEvents, readAll(t, old, 1))
	for _, name := range freshStats.Segments {
		require.FileExists(t, filepath.Join(archiveDir, name), "the old log removed the fresh log's segment")
	}
}

func mustZstdEncoder(t *testing.T) *zstd.Encoder {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	require.NoError(t, err)
	t.Cleanup(func() { enc.Close() })
	return enc
}

// TestArchiveTinySegment archives a single small event: its block is too
// small for the compressor to record its size.
func TestArchiveTinySegment(t *testing.T) {
	clock := newFakeClock()
	l := openTest(t, t.TempDir(), Options{Clock: clock.Now, ArchiveAfter: time.Minute})
	e := []Event{{Txn: "S1", Payload: &ContentReleased{Content: "S1"}}}
	_, err := l.Append(context.Background(), e...)
	require.NoError(t, err)
	clock.Advance(time.Hour)
	stats, err := l.Archive(context.Background(), func(string) (time.Time, bool) { return t0, true })
	require.NoError(t, err)
	require.Equal(t, 1, stats.Archived)
	requireSameEvents(t, e, readAll(t, l, 1))
}
