package content

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// compactFixture writes n bodies of size bytes into small segments and
// releases all but every keep-th, returning the references of those kept
// with their seeds.
func compactFixture(t *testing.T, s *Store, n, size, keep int) map[string]uint64 {
	t.Helper()
	kept := map[string]uint64{}
	for i := range n {
		ref := put(t, s, fmt.Sprintf("S%d", i), body(uint64(i), size))
		if i%keep == 0 {
			kept[ref] = uint64(i)
		} else {
			require.NoError(t, s.Release(ref))
		}
	}
	return kept
}

func TestCompactionKeepsReferences(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	opts.CompactAge = time.Hour
	opts.Now = func() time.Time { return now }
	s := openStore(t, dir, opts)
	kept := compactFixture(t, s, 200, 3000, 10)
	before := s.Stats()
	require.NoError(t, s.Compact(context.Background()))
	require.Zero(t, s.Stats().Compactions, "segments younger than CompactAge stay")

	now = now.Add(2 * time.Hour)
	require.NoError(t, s.Compact(context.Background()))
	after := s.Stats()
	t.Logf("before: %+v", before)
	t.Logf("after:  %+v", after)
	require.Greater(t, after.Compactions, uint64(0))
	require.Less(t, after.Bytes, before.Bytes/3)
	require.Less(t, after.Segments, before.Segments)
	require.Equal(t, before.Bodies, after.Bodies)
	require.Positive(t, after.Relocated)
	for ref, seed := range kept {
		requireBody(t, s, ref, body(seed, 3000))
	}
	wantRefs := make([]string, 0, len(kept))
	for ref := range kept {
		wantRefs = append(wantRefs, ref)
	}
	sort.Strings(wantRefs)
	require.Equal(t, wantRefs, scanRefs(t, s))

	// A second pass finds nothing more to do.
	require.NoError(t, s.Compact(context.Background()))
	require.Equal(t, after.Compactions, s.Stats().Compactions)
	require.NoError(t, s.Close())

	// The moved bodies are found after a restart, under the same refs.
	s = openStore(t, dir, opts)
	require.Equal(t, after.Relocated, s.Stats().Relocated)
	require.Equal(t, wantRefs, scanRefs(t, s))
	for ref, seed := range kept {
		requireBody(t, s, ref, body(seed, 3000))
	}
	// Releasing moved bodies reclaims the compacted segment.
	for ref := range kept {
		require.NoError(t, s.Release(ref))
		require.NoError(t, s.Release(ref))
		require.False(t, s.Exists(ref))
	}
	require.Zero(t, s.Stats().Bodies)
	require.Zero(t, s.Stats().Relocated)
	require.NoError(t, s.Close())
	require.Empty(t, segmentFiles(t, dir))
}

func TestCompactionAgain(t *testing.T) {
	// Bodies moved once are moved again when their new segment thins out.
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentSize = 32 << 10
	opts.CompactAge = -1
	s := openStore(t, dir, opts)
	defer s.Close()
	kept := compactFixture(t, s, 300, 1000, 3)
	require.NoError(t, s.Compact(context.Background()))
	first := s.Stats().Compactions
	n := 0
	for ref := range kept {
		if n%2 == 0 {
			require.NoError(t, s.Release(ref))
			delete(kept, ref)
		}
		n++
	}
	require.NoError(t, s.Compact(context.Background()))
	require.Greater(t, s.Stats().Compactions, first)
	for ref, seed := range kept {
		requireBody(t, s, ref, body(seed, 1000))
	}
	require.Len(t, scanRefs(t, s), len(kept))
}

func TestCompactionWhileReading(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	opts.CompactAge = -1
	s := openStore(t, dir, opts)
	defer s.Close()
	kept := compactFixture(t, s, 100, 3000, 10)
	var readers []io.ReadCloser
	for ref := range kept {
		r, err := s.Open(ref)
		require.NoError(t, err)
		readers = append(readers, r)
	}
	// Hold a segment open the way a slow large-body reader does: the
	// first body's, which is sealed and compacted (a body of the last
	// segment, still open for writing, stays where it is).
	var ref string
	for r, seed := range kept {
		if seed == 0 {
			ref = r
		}
	}
	loc, g := s.resolveLocked(refKey(t, ref))
	s.mu.Lock()
	f, err := s.acquireLocked(g)
	s.mu.Unlock()
	require.NoError(t, err)
	require.NoError(t, s.Compact(context.Background()))
	// The pinned segment is out of the store but still on disk until
	// the reader lets go.
	_, err = os.Stat(s.segmentPath(loc.seg))
	require.NoError(t, err)
	s.releaseSegment(g, f)
	_, err = os.Stat(s.segmentPath(loc.seg))
	require.ErrorIs(t, err, os.ErrNotExist)
	for _, r := range readers {
		_, err := io.ReadAll(r)
		require.NoError(t, err)
		r.Close()
	}
	for ref, seed := range kept {
		requireBody(t, s, ref, body(seed, 3000))
	}
}

// TestCompactionCrashLeavesTwoCopies puts back the source segments of a
// compaction, as a crash between syncing the new segment and deleting the
// old ones would leave them, and checks that Open keeps one copy of each
// body, honours releases made to either copy, and never resurrects one.
func TestCompactionCrashLeavesTwoCopies(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	opts.CompactAge = -1
	s := openStore(t, dir, opts)
	kept := compactFixture(t, s, 100, 3000, 5)
	require.NoError(t, s.Close())
	saved := t.TempDir()
	copyDir(t, dir, saved)

	s = openStore(t, dir, opts)
	require.NoError(t, s.Compact(context.Background()))
	require.Positive(t, s.Stats().Relocated)
	// One body released after compaction: the mark goes to the copy.
	var releasedAfter string
	for ref := range kept {
		releasedAfter = ref
		break
	}
	require.NoError(t, s.Release(releasedAfter))
	delete(kept, releasedAfter)
	require.NoError(t, s.Close())

	// One body released in the old copy only: as if Release had hit the
	// source while compaction was copying and the process died.
	var releasedBefore string
	for ref := range kept {
		releasedBefore = ref
		break
	}
	delete(kept, releasedBefore)
	copyMissing(t, saved, dir)
	k := refKey(t, releasedBefore)
	rel, err := os.OpenFile(filepath.Join(dir, releaseName(k.seg)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	require.NoError(t, err)
	var mark [relEntrySize]byte
	relEntry{off: k.off, length: 3000 + recordHeaderSize}.put(mark[:])
	_, err = rel.Write(mark[:])
	require.NoError(t, err)
	require.NoError(t, rel.Close())

	// The first Open resolves the copies; the second must agree with it:
	// marking an old copy superseded must not read as a release later.
	s = openStore(t, dir, opts)
	require.EqualValues(t, len(kept), s.Stats().Bodies)
	require.NoError(t, s.Close())
	s = openStore(t, dir, opts)
	want := make([]string, 0, len(kept))
	for ref, seed := range kept {
		requireBody(t, s, ref, body(seed, 3000))
		want = append(want, ref)
	}
	sort.Strings(want)
	require.Equal(t, want, scanRefs(t, s), "each body once; released ones gone")
	require.False(t, s.Exists(releasedAfter))
	require.EqualValues(t, len(kept), s.Stats().Bodies)

	// Release everything: no copy may come back after a restart.
	for ref := range kept {
		require.NoError(t, s.Release(ref))
	}
	require.NoError(t, s.Close())
	s = openStore(t, dir, opts)
	defer s.Close()
	require.Empty(t, scanRefs(t, s))
	require.Zero(t, s.Stats().Bodies)
}

func TestCompactionSkipsDamagedSegment(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	opts.CompactAge = -1
	s := openStore(t, dir, opts)
	kept := compactFixture(t, s, 40, 3000, 10)
	require.NoError(t, s.Close())
	var damaged string
	for ref := range kept {
		damaged = ref
		break
	}
	k := refKey(t, damaged)
	flipByte(t, filepath.Join(dir, segmentName(k.seg)), k.off+recordHeaderSize+10)

	s = openStore(t, dir, opts)
	defer s.Close()
	require.NoError(t, s.Compact(context.Background()))
	_, err := s.Open(damaged)
	require.ErrorIs(t, err, ErrCorrupt, "damage is never copied into a healthy segment")
	for ref, seed := range kept {
		if ref != damaged {
			requireBody(t, s, ref, body(seed, 3000))
		}
	}
	s.mu.Lock()
	require.True(t, s.segments[k.seg].damaged)
	s.mu.Unlock()
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(to, e.Name()), b, 0o640))
	}
}

// copyMissing copies the segment files of from that to lacks, with their
// release files.
func copyMissing(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, e := range entries {
		id, ok := parseFileName(e.Name(), segmentExt)
		if !ok {
			continue
		}
		if _, err := os.Stat(filepath.Join(to, e.Name())); err == nil {
			continue
		}
		for _, name := range []string{segmentName(id), releaseName(id)} {
			b, err := os.ReadFile(filepath.Join(from, name))
			if os.IsNotExist(err) {
				continue
			}
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(to, name), b, 0o640))
		}
	}
}

// TestCompactionCrashMidCopy leaves what a crash in the middle of a
// compaction leaves: the sources intact and a new segment holding copies
// of some of their bodies, unsealed. Open recovers the partial segment and
// keeps one copy of each body; the sources stay (they hold other live
// bodies), and later Opens agree.
func TestCompactionCrashMidCopy(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentSize = 64 << 10
	opts.CompactAge = -1
	s := openStore(t, dir, opts)
	kept := compactFixture(t, s, 100, 3000, 4)
	require.NoError(t, s.Close())
	saved := t.TempDir()
	copyDir(t, dir, saved)

	s = openStore(t, dir, opts)
	require.NoError(t, s.Compact(context.Background()))
	var out []byte
	for _, path := range segmentFiles(t, dir) {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		h, err := decodeFileHeader(b)
		require.NoError(t, err)
		if h.kind == kindCompacted {
			out = b
		}
	}
	require.NoError(t, s.Close())
	require.NotNil(t, out)

	// Back to the sources, plus the first three copies, torn after them.
	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, os.MkdirAll(dir, 0o750))
	copyDir(t, saved, dir)
	end := int64(fileHeaderSize)
	for range 3 {
		h, _, err := decodeRecordHeader(out[end:])
		require.NoError(t, err)
		end += h.recordLen()
	}
	id, _ := decodeFileHeader(out)
	require.NoError(t, os.WriteFile(filepath.Join(dir, segmentName(id.id)), out[:end+100], 0o640))

	for round := range 3 {
		s = openStore(t, dir, opts)
		require.EqualValues(t, len(kept), s.Stats().Bodies, "round %d", round)
		for ref, seed := range kept {
			requireBody(t, s, ref, body(seed, 3000))
		}
		require.Len(t, scanRefs(t, s), len(kept))
		require.NoError(t, s.Close())
	}
}
