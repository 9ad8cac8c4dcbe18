package log

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// copyTree copies the directory tree src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o640)
	})
	require.NoError(t, err)
}

// flipByte flips one bit of the byte at off in file.
func flipByte(t *testing.T, file string, off int64) {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Less(t, off, int64(len(b)))
	b[off] ^= 0x10
	require.NoError(t, os.WriteFile(file, b, 0o640))
}

// filesWithSuffix returns the files in dir ending in suffix, largest first.
func filesWithSuffix(t *testing.T, dir, suffix string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	var sizes []int64
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), suffix) {
			fi, err := e.Info()
			require.NoError(t, err)
			i := 0
			for i < len(sizes) && sizes[i] >= fi.Size() {
				i++
			}
			out = append(out[:i], append([]string{filepath.Join(dir, e.Name())}, out[i:]...)...)
			sizes = append(sizes[:i], append([]int64{fi.Size()}, sizes[i:]...)...)
		}
	}
	return out
}

// readUntilError reads the log from 1 and returns how many events it read
// and the error that stopped it.
func readUntilError(l *Log) (int, error) {
	it := l.Iter(1)
	defer it.Close()
	n := 0
	for it.Next() {
		n++
		if it.Event().Seq != uint64(n) {
			return n, errors.New("out of sequence")
		}
	}
	return n, it.Err()
}

func TestDamagedRecordIsReportedWithItsSeq(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	appendFlow(t, l, newMailFlow(9), 100, finishedSet{})

	k := makeEventKey(57)
	v, closer, err := l.db.Get(k[:])
	require.NoError(t, err)
	bad := bytes.Clone(v)
	closer.Close()
	bad[len(bad)/2] ^= 0x01
	require.NoError(t, l.db.Set(k[:], bad, pebble.Sync))

	n, err := readUntilError(l)
	require.Equal(t, 56, n, "the records before it are read")
	var re *RecordError
	require.ErrorAs(t, err, &re)
	require.Equal(t, uint64(57), re.Seq)
	require.Equal(t, "live log", re.Where)
	require.ErrorIs(t, err, ErrChecksum)
	require.Contains(t, err.Error(), "record 57")

	_, err = l.Get(57)
	require.ErrorAs(t, err, &re)
	require.Equal(t, uint64(57), re.Seq)

	// The archive pass refuses to move it, and says where it is.
	_, err = l.Archive(context.Background(), func(string) (time.Time, bool) { return time.Time{}, true })
	require.ErrorAs(t, err, &re)
	require.Equal(t, uint64(57), re.Seq)
}

func TestMissingRecordIsReported(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	appendFlow(t, l, newMailFlow(9), 30, finishedSet{})
	k := makeEventKey(12)
	require.NoError(t, l.db.Delete(k[:], pebble.Sync))
	n, err := readUntilError(l)
	require.Equal(t, 11, n)
	var re *RecordError
	require.ErrorAs(t, err, &re)
	require.Equal(t, uint64(12), re.Seq)
	require.ErrorIs(t, err, ErrMissing)
}

// TestFlippedByteInStoreCopy flips a byte in a copy of the store's files,
// in an sstable and in the WAL, and checks that opening or reading the copy
// reports it rather than returning fewer events.
func TestFlippedByteInStoreCopy(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	require.NoError(t, err)
	appendFlow(t, l, newMailFlow(11), 3000, finishedSet{})
	require.NoError(t, l.db.Flush()) // everything so far into sstables
	appendFlow(t, l, newMailFlow(12), 3000, finishedSet{})
	require.NoError(t, l.Close()) // the rest stays in the WAL
	const total = 6000

	for _, tc := range []struct {
		name   string
		suffix string
	}{
		{"sstable", ".sst"},
		{"wal", ".log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := t.TempDir()
			copyTree(t, dir, cp)
			files := filesWithSuffix(t, filepath.Join(cp, "pebble"), tc.suffix)
			require.NotEmpty(t, files)
			fi, err := os.Stat(files[0])
			require.NoError(t, err)
			off := fi.Size() / 3
			flipByte(t, files[0], off)

			if tc.suffix == ".log" {
				_, err := OpenReadOnly(cp, Options{})
				require.ErrorContains(t, err, "damaged WAL "+filepath.Base(files[0]))
			}
			l, err := Open(cp, Options{})
			if err != nil {
				t.Logf("open reports: %v", err)
				require.Contains(t, err.Error(), "damaged WAL "+filepath.Base(files[0]))
				require.Contains(t, err.Error(), "after event")
				return
			}
			defer l.Close()
			n, err := readUntilError(l)
			require.Error(t, err, "a flipped byte in %s at %d went unnoticed (%d events read)", filepath.Base(files[0]), off, n)
			t.Logf("read %d events, then: %v", n, err)
			var re *RecordError
			require.ErrorAs(t, err, &re)
			require.Equal(t, uint64(n+1), re.Seq)
			require.Less(t, n, total)
		})
	}
}

func TestDamagedArchiveSegmentIsReported(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	opts := Options{Clock: clock.Now, ArchiveAfter: time.Minute}
	l := openTest(t, dir, opts)
	done := finishedSet{}
	appendFlow(t, l, newMailFlow(13), 3000, done)
	clock.Advance(time.Hour)
	stats, err := l.Archive(context.Background(), done.finished)
	require.NoError(t, err)
	require.Len(t, stats.Segments, 1)
	seg := filepath.Join(dir, "archive", stats.Segments[0])
	fi, err := os.Stat(seg)
	require.NoError(t, err)
	require.NoError(t, os.Chmod(seg, 0o640))
	flipByte(t, seg, fi.Size()/2)

	n, err := readUntilError(l)
	var re *RecordError
	require.ErrorAs(t, err, &re)
	require.Equal(t, uint64(n+1), re.Seq, "error %v", err)
	require.Contains(t, re.Where, stats.Segments[0])
	require.Contains(t, re.Where, "offset")
	t.Logf("read %d events, then: %v", n, err)
}

// TestUnknownEventTypeStopsReaders puts a record of a type from the future
// into the log: readers report it with its sequence number and do not skip
// it.
func TestUnknownEventTypeStopsReaders(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	appendFlow(t, l, newMailFlow(9), 20, finishedSet{})

	body, err := msgpack.Marshal(map[string]any{"t": 77, "v": 1, "x": "S1", "p": map[string]any{"q": 1}})
	require.NoError(t, err)
	rec := append([]byte{recordFormat, 0, 0, 0, 0}, body...)
	sealRecord(rec, crc32.Update(0, crcTable, body), 8)
	k := makeEventKey(8)
	require.NoError(t, l.db.Set(k[:], rec, pebble.Sync))

	n, err := readUntilError(l)
	require.Equal(t, 7, n)
	var re *RecordError
	require.ErrorAs(t, err, &re)
	require.Equal(t, uint64(8), re.Seq)
	require.ErrorIs(t, err, ErrUnknownEventType)
	require.Contains(t, err.Error(), "77")
}
