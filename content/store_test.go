package content

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/log"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	s := openStore(t, dir, opts)
	limit := opts.InlineLimit
	sizes := []int{0, 1, 2, 77, 78, 5000, limit - 1, limit, limit + 1, 3*limit + 17, 2 << 20}
	refs := make([]string, len(sizes))
	for i, n := range sizes {
		refs[i] = put(t, s, fmt.Sprintf("S%02d", i), body(uint64(i), n))
		require.True(t, s.Exists(refs[i]))
	}
	for i, n := range sizes {
		requireBody(t, s, refs[i], body(uint64(i), n))
	}
	st := s.Stats()
	require.EqualValues(t, len(sizes), st.Bodies)
	require.EqualValues(t, len(sizes), st.Commits)
	require.NoError(t, s.Close())

	s = openStore(t, dir, opts)
	defer s.Close()
	for i, n := range sizes {
		requireBody(t, s, refs[i], body(uint64(i), n))
	}
	got := scanRefs(t, s)
	want := append([]string(nil), refs...)
	sort.Strings(want)
	require.Equal(t, want, got)
}

// TestLargeBodyBoundedMemory streams a 50 MB body in and out and checks
// that neither direction holds it in memory. The body goes in one line at
// a time, as the SMTP server writes it (672,000 writes of 78 bytes), so
// that an allocation per line would show as well as holding the body.
func TestLargeBodyBoundedMemory(t *testing.T) {
	const size = 50 << 20
	s := openStore(t, t.TempDir(), Options{CompactInterval: -1, FreeSpace: func(string) (int64, error) { return 1 << 40, nil }})
	defer s.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w, err := s.Create(context.Background(), testEnvelope("SLARGE", 1))
	require.NoError(t, err)
	wantSum := sha256.New()
	lines, err := writeLines(w, io.TeeReader(newGenerator(50, size), wantSum))
	require.NoError(t, err)
	require.EqualValues(t, size, w.Size())
	ref, err := w.Commit(context.Background())
	require.NoError(t, err)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	mallocs := after.Mallocs - before.Mallocs
	t.Logf("writing %d bytes in %d lines allocated %d bytes in %d allocations", size, lines, allocated, mallocs)
	require.Less(t, allocated, uint64(4<<20), "the writer must not hold the body in memory")
	require.Less(t, mallocs, uint64(lines/100), "the writer allocates per line")

	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := s.Open(ref)
	require.NoError(t, err)
	gotSum := sha256.New()
	n, err := io.CopyBuffer(gotSum, r, make([]byte, 32<<10))
	require.NoError(t, err)
	require.NoError(t, r.Close())
	runtime.ReadMemStats(&after)
	allocated = after.TotalAlloc - before.TotalAlloc
	t.Logf("reading %d bytes allocated %d bytes", size, allocated)
	require.Less(t, allocated, uint64(4<<20), "the reader must not hold the body in memory")
	require.EqualValues(t, size, n)
	require.Equal(t, wantSum.Sum(nil), gotSum.Sum(nil))
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	s := openStore(t, dir, opts)
	const writers, each = 16, 30
	type stored struct {
		ref  string
		seed uint64
		n    int
	}
	var mu sync.Mutex
	var all []stored
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				seed := uint64(g*1000 + i)
				n := int(seed*7919) % (opts.InlineLimit + opts.InlineLimit/4) // a fifth spill
				w, err := s.Create(context.Background(), testEnvelope(fmt.Sprintf("S%d-%d", g, i), 1))
				if err != nil {
					errs <- err
					return
				}
				// Write in pieces, as the SMTP server does.
				if _, err := io.CopyBuffer(w, newGenerator(seed, int64(n)), make([]byte, 1000)); err != nil {
					errs <- err
					return
				}
				ref, err := w.Commit(context.Background())
				if err != nil {
					errs <- err
					return
				}
				// Read back while the others write.
				r, err := s.Open(ref)
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					errs <- err
					return
				}
				if string(got) != string(body(seed, n)) {
					errs <- fmt.Errorf("body %s differs", ref)
					return
				}
				mu.Lock()
				all = append(all, stored{ref, seed, n})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, all, writers*each)
	st := s.Stats()
	t.Logf("%d commits, %d syncs, %d segments", st.Commits, st.Syncs, st.Segments)
	require.NoError(t, s.Close())
	s = openStore(t, dir, opts)
	defer s.Close()
	seen := map[string]bool{}
	for _, b := range all {
		require.False(t, seen[b.ref], "reference %s handed out twice", b.ref)
		seen[b.ref] = true
		requireBody(t, s, b.ref, body(b.seed, b.n))
	}
	require.Len(t, scanRefs(t, s), len(all))
}

func TestReleaseReclaimsSpace(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	s := openStore(t, dir, opts)
	var refs []string
	for i := range 100 {
		refs = append(refs, put(t, s, fmt.Sprintf("S%d", i), body(uint64(i), 5000)))
	}
	// One large body, in a segment of its own.
	large := put(t, s, "SLARGE", body(1000, opts.InlineLimit+1))
	refs = append(refs, large)
	full := s.Stats()
	require.Greater(t, full.Segments, 5)
	require.EqualValues(t, 101, full.Bodies)

	for _, ref := range refs {
		require.NoError(t, s.Release(ref))
		require.NoError(t, s.Release(ref), "release is idempotent")
		require.False(t, s.Exists(ref))
		_, err := s.Open(ref)
		require.ErrorIs(t, err, ErrNotFound)
	}
	st := s.Stats()
	require.EqualValues(t, 0, st.Bodies)
	require.EqualValues(t, 101, st.Releases)
	// Only the segment still receiving bodies remains.
	require.Equal(t, 1, st.Segments)
	require.Len(t, segmentFiles(t, dir), 1)
	require.Less(t, st.Bytes, full.Bytes/5)
	require.NoError(t, s.Close())

	// Sealing the last segment at Close found it fully released.
	require.Empty(t, segmentFiles(t, dir))
	s = openStore(t, dir, opts)
	defer s.Close()
	require.Empty(t, scanRefs(t, s))
	for _, ref := range refs {
		require.NoError(t, s.Release(ref), "release after restart is a no-op")
	}
}

func TestReleasesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	s := openStore(t, dir, opts)
	var refs []string
	for i := range 60 {
		refs = append(refs, put(t, s, fmt.Sprintf("S%d", i), body(uint64(i), 3000)))
	}
	for i, ref := range refs {
		if i%3 != 0 {
			require.NoError(t, s.Release(ref))
		}
	}
	s.crash() // release marks are synced lazily; the sync loop's last round ran
	s = openStore(t, dir, opts)
	defer s.Close()
	for i, ref := range refs {
		if i%3 != 0 {
			require.False(t, s.Exists(ref), "body %d was released", i)
		} else {
			requireBody(t, s, ref, body(uint64(i), 3000))
		}
	}
	require.EqualValues(t, 20, s.Stats().Bodies)
	require.Len(t, scanRefs(t, s), 20)
}

func TestRecoveryCutsTornTail(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	s := openStore(t, dir, opts)
	var refs []string
	for i := range 10 {
		refs = append(refs, put(t, s, fmt.Sprintf("S%d", i), body(uint64(i), 1000)))
	}
	active := s.segmentPath(s.active.id)
	s.crash()

	// A record that was being written when the process died: a whole
	// header and part of its body.
	f, err := os.OpenFile(active, os.O_RDWR|os.O_APPEND, 0)
	require.NoError(t, err)
	fi, err := f.Stat()
	require.NoError(t, err)
	h := recordHeader{key: key{seg: refKey(t, refs[0]).seg, off: fi.Size()}, bodyLen: 5000, stamp: 1}
	hb := make([]byte, recordHeaderSize)
	h.put(hb)
	_, err = f.Write(append(hb, body(99, 1000)...))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	s = openStore(t, dir, opts)
	for i, ref := range refs {
		requireBody(t, s, ref, body(uint64(i), 1000))
	}
	require.Len(t, scanRefs(t, s), 10)
	fi2, err := os.Stat(active)
	require.NoError(t, err)
	require.Equal(t, fi.Size()+10*footerEntrySize+trailerSize, fi2.Size(), "torn record cut, segment sealed")
	// New bodies go to a new segment and the old ones stay readable.
	ref := put(t, s, "SNEW", body(100, 10))
	require.NotEqual(t, refKey(t, refs[0]).seg, refKey(t, ref).seg)
	require.NoError(t, s.Close())
}

func TestUnfinishedLargeBodyRemoved(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	s := openStore(t, dir, opts)
	keep := put(t, s, "SKEEP", body(1, 100))
	w, err := s.Create(context.Background(), testEnvelope("SBIG", 1))
	require.NoError(t, err)
	_, err = w.Write(body(2, 3*opts.InlineLimit))
	require.NoError(t, err)
	require.NoError(t, w.bw.Flush())
	s.crash() // the writer never committed
	require.Len(t, segmentFiles(t, dir), 2)

	s = openStore(t, dir, opts)
	defer s.Close()
	require.Len(t, segmentFiles(t, dir), 1, "the unfinished body's segment is removed")
	require.Equal(t, []string{keep}, scanRefs(t, s))
	requireBody(t, s, keep, body(1, 100))
}

func TestAbort(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	s := openStore(t, dir, opts)
	defer s.Close()
	for _, n := range []int{10, 3 * opts.InlineLimit} {
		w, err := s.Create(context.Background(), testEnvelope("SABORT", 1))
		require.NoError(t, err)
		_, err = w.Write(body(1, n))
		require.NoError(t, err)
		w.Abort()
		_, err = w.Commit(context.Background())
		require.Error(t, err)
	}
	require.Empty(t, segmentFiles(t, dir))
	require.EqualValues(t, 0, s.Stats().Bodies)
}

func TestCommitCancelledIsNotKept(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions())
	defer s.Close()
	w, err := s.Create(context.Background(), testEnvelope("SCANCEL", 1))
	require.NoError(t, err)
	_, err = w.Write(body(1, 100))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = w.Commit(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.EqualValues(t, 0, s.Stats().Bodies)
}

func TestEnvelopeRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions())
	env := Envelope{
		Txn: "S0000000000000123400", Session: "S00000000000000AB00", Listener: "submission",
		Sender: "", // the null sender
		Rcpts: []log.Recipient{
			{Addr: "a@example.net", ORCPT: "rfc822;A@example.net", Notify: log.NotifySuccess | log.NotifyFailure},
			{Addr: "b@example.net", Notify: log.NotifyNever},
		},
		RET: "HDRS", ENVID: "QQ314159", Size: 12345, Body: "8BITMIME", SMTPUTF8: true,
		ClientIP: "127.0.0.1", ClientPort: 2525, ClientName: "localhost", ClientResolve: "ok",
		HELO: "[127.0.0.1]", Protocol: "ESMTPSA",
		TLS:        &log.TLSInfo{Version: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", Bits: 128, Verify: "NO"},
		Auth:       &log.AuthInfo{Mechanism: "PLAIN", User: "alice"},
		ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		DSNOf:      "S0000000000000111100",
	}
	for i, n := range []int{10, 3 * testOptions().InlineLimit} {
		w, err := s.Create(context.Background(), env)
		require.NoError(t, err)
		_, err = w.Write(body(uint64(i), n))
		require.NoError(t, err)
		_, err = w.Commit(context.Background())
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	s = openStore(t, dir, testOptions())
	defer s.Close()
	var got []Body
	require.NoError(t, s.Scan(context.Background(), func(b Body) error {
		got = append(got, b)
		return nil
	}))
	require.Len(t, got, 2)
	for _, b := range got {
		require.NoError(t, b.Err)
		require.Equal(t, env, b.Envelope)
		require.True(t, s.Exists(b.Ref))
	}
	require.EqualValues(t, 10, got[0].Size)
	require.EqualValues(t, 3*testOptions().InlineLimit, got[1].Size)
}

func TestReceivedAtDefaultsToCommitTime(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	opts := testOptions()
	opts.Now = func() time.Time { return now }
	s := openStore(t, t.TempDir(), opts)
	defer s.Close()
	w, err := s.Create(context.Background(), Envelope{Txn: "S1"})
	require.NoError(t, err)
	_, err = w.Commit(context.Background())
	require.NoError(t, err)
	require.NoError(t, s.Scan(context.Background(), func(b Body) error {
		require.Equal(t, now, b.Envelope.ReceivedAt)
		require.Equal(t, now, b.Stamp)
		return nil
	}))
}

func TestDamagedBodyIsReportedNotServed(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	s := openStore(t, dir, opts)
	small := put(t, s, "SSMALL", body(1, 4000))
	large := put(t, s, "SLARGE", body(2, 3*opts.InlineLimit))
	header := put(t, s, "SHEADER", body(3, 100))
	envelope := put(t, s, "SENV", body(4, 100))
	require.NoError(t, s.Close())

	damage := func(ref string, at func(h recordHeader) int64) {
		k := refKey(t, ref)
		path := filepath.Join(dir, segmentName(k.seg))
		f, err := os.Open(path)
		require.NoError(t, err)
		hb := make([]byte, recordHeaderSize)
		_, err = f.ReadAt(hb, k.off)
		require.NoError(t, err)
		f.Close()
		h, _, err := decodeRecordHeader(hb)
		require.NoError(t, err)
		flipByte(t, path, k.off+at(h))
	}
	damage(small, func(h recordHeader) int64 { return recordHeaderSize + 1234 })
	damage(large, func(h recordHeader) int64 { return recordHeaderSize + h.bodyLen - 1 })
	damage(header, func(h recordHeader) int64 { return 30 })
	damage(envelope, func(h recordHeader) int64 { return recordHeaderSize + h.bodyLen + 3 })

	s = openStore(t, dir, opts)
	defer s.Close()
	for _, ref := range []string{small, large, header} {
		r, err := s.Open(ref)
		require.ErrorIs(t, err, ErrCorrupt, "body %s", ref)
		require.Nil(t, r)
		require.Contains(t, err.Error(), "segment ")
	}
	// The body behind a damaged envelope is intact and served.
	requireBody(t, s, envelope, body(4, 100))
	var damaged []string
	require.NoError(t, s.Scan(context.Background(), func(b Body) error {
		if b.Err != nil {
			require.ErrorIs(t, b.Err, ErrCorrupt)
			damaged = append(damaged, b.Ref)
		}
		return nil
	}))
	require.ElementsMatch(t, []string{header, envelope}, damaged)
	// Damaged bodies can still be released and their space reclaimed.
	for _, ref := range []string{small, large, header, envelope} {
		require.NoError(t, s.Release(ref))
		require.False(t, s.Exists(ref))
	}
	require.EqualValues(t, 0, s.Stats().Bodies)
}

func TestDamagedLargeBodyWhileStreaming(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	s := openStore(t, dir, opts)
	defer s.Close()
	n := 4 * opts.InlineLimit
	ref := put(t, s, "SLARGE", body(7, n))
	r, err := s.Open(ref)
	require.NoError(t, err)
	defer r.Close()
	// The file changes after Open checked it.
	k := refKey(t, ref)
	flipByte(t, filepath.Join(dir, segmentName(k.seg)), k.off+recordHeaderSize+int64(n)-10)
	_, err = io.ReadAll(r)
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestBadReferences(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions())
	defer s.Close()
	ref := put(t, s, "S1", body(1, 100))
	k := refKey(t, ref)
	for _, bad := range []string{
		"", "x", ref + "0",
		formatRef(key{seg: k.seg, off: k.off + 1}, 0),  // not a record
		formatRef(k, 0x12345678),                       // another check
		formatRef(key{seg: k.seg + 99, off: k.off}, 0), // no such segment
		formatRef(key{seg: k.seg, off: 1 << 40}, 0),    // past the end
	} {
		require.False(t, s.Exists(bad), bad)
		_, err := s.Open(bad)
		require.Error(t, err, bad)
	}
	// Releasing a reference that names no record in a live segment is an
	// error; releasing one whose segment is gone is not.
	require.ErrorIs(t, s.Release(formatRef(key{seg: k.seg, off: k.off + 1}, 0)), ErrNotFound)
	require.NoError(t, s.Release(formatRef(key{seg: k.seg + 99, off: k.off}, 0)))
	requireBody(t, s, ref, body(1, 100))
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions())
	defer s.Close()
	_, err := Open(dir, testOptions())
	require.ErrorContains(t, err, "locked")
}

func TestClosedStore(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions())
	ref := put(t, s, "S1", body(1, 10))
	w, err := s.Create(context.Background(), testEnvelope("S2", 1))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = w.Commit(context.Background())
	require.ErrorIs(t, err, ErrClosed)
	_, err = s.Create(context.Background(), testEnvelope("S3", 1))
	require.ErrorIs(t, err, ErrClosed)
	_, err = s.Open(ref)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, s.Release(ref), ErrClosed)
	require.ErrorIs(t, s.Close(), ErrClosed)
}

func TestOptionsValidated(t *testing.T) {
	_, err := Open(t.TempDir(), Options{MinDiskSpace: 100, OkDiskSpace: 50})
	require.ErrorContains(t, err, "ok_disk_space")
}

func TestDamagedSegmentHeaderMovedAside(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	s := openStore(t, dir, opts)
	ref := put(t, s, "S1", body(1, 10))
	require.NoError(t, s.Close())
	path := filepath.Join(dir, segmentName(refKey(t, ref).seg))
	flipByte(t, path, 20)
	s = openStore(t, dir, opts)
	defer s.Close()
	_, err := s.Open(ref)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = os.Stat(path + ".damaged")
	require.NoError(t, err)
}

func TestSyncFailureIsSticky(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions())
	defer s.Close()
	put(t, s, "S1", body(1, 10))
	s.mu.Lock()
	s.failLocked(errors.New("injected EIO"))
	s.mu.Unlock()
	w, err := s.Create(context.Background(), testEnvelope("S2", 1))
	require.ErrorContains(t, err, "injected EIO")
	require.Nil(t, w)
}

func TestReleaseOrphans(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := testOptions()
	opts.SegmentSize = 16 << 10
	opts.Now = func() time.Time { now = now.Add(time.Millisecond); return now }
	s := openStore(t, dir, opts)
	var refs []string
	for i := range 12 {
		refs = append(refs, put(t, s, fmt.Sprintf("S%d", i), body(uint64(i), 3000)))
	}
	large := put(t, s, "SLARGE", body(99, 2*opts.InlineLimit))
	require.NoError(t, s.Release(refs[0])) // already released: not an orphan
	require.NoError(t, s.Close())

	s = openStore(t, dir, opts)
	defer s.Close()
	// A body committed after Open whose TxnReceived is not in the log yet.
	fresh := put(t, s, "SFRESH", body(100, 10))
	queued := map[string]bool{refs[2]: true, refs[5]: true, large: true}
	var asked []string
	n, err := s.ReleaseOrphans(context.Background(), func(ref string) bool {
		asked = append(asked, ref)
		return queued[ref]
	})
	require.NoError(t, err)
	require.Equal(t, 9, n, "12 bodies, 1 released before, 2 queued")
	require.NotContains(t, asked, refs[0])
	require.NotContains(t, asked, fresh)
	for i, ref := range refs {
		require.Equal(t, queued[ref], s.Exists(ref), "body %d", i)
	}
	requireBody(t, s, large, body(99, 2*opts.InlineLimit))
	requireBody(t, s, fresh, body(100, 10))
	require.EqualValues(t, 4, s.Stats().Bodies)
}

// TestConcurrentCommitsShareSyncs commits from 64 writers at once, each
// body acknowledged only once durable: the writers share fdatasync calls
// (group commit), so there are far fewer syncs than commits. In each of
// ten waves every writer has its body written before any commits, as
// when 64 SMTP sessions reach the final dot together.
// BenchmarkDurableWrite measures the ratio; this checks that sharing
// happens at all.
func TestConcurrentCommitsShareSyncs(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions())
	defer s.Close()
	const writers, waves = 64, 10
	before := s.Stats()
	for wave := range waves {
		writersReady := make([]*Writer, writers)
		for g := range writersReady {
			w, err := s.Create(context.Background(), testEnvelope(fmt.Sprintf("S%d-%d", wave, g), 1))
			require.NoError(t, err)
			_, err = w.Write(body(uint64(wave*writers+g), 1000))
			require.NoError(t, err)
			writersReady[g] = w
		}
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for _, w := range writersReady {
			wg.Go(func() {
				if _, err := w.Commit(context.Background()); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	st := s.Stats()
	commits, syncs := st.Commits-before.Commits, st.Syncs-before.Syncs
	t.Logf("%d commits, %d syncs", commits, syncs)
	require.EqualValues(t, writers*waves, commits)
	require.Positive(t, syncs)
	require.Less(t, syncs, commits/2, "concurrent commits do not share syncs")
}
