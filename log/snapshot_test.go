package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
)

func snapshotData(seq uint64, size int) []byte {
	b := bytes.Repeat([]byte(fmt.Sprintf("state at %d;", seq)), size/12+1)
	return b[:size]
}

func TestSnapshotsKeepTheNewestAndSkipDamaged(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{SnapshotsKept: 3})
	ctx := context.Background()
	for range 100 {
		_, err := l.Append(ctx, everyType()[6])
		require.NoError(t, err)
	}
	_, err := l.LatestSnapshot(nil)
	require.ErrorIs(t, err, ErrNoSnapshot)

	// A multi-chunk snapshot among small ones.
	sizes := map[uint64]int{10: 100, 20: 0, 30: 3*snapshotChunkSize + 5, 40: 1000, 50: 2000}
	for _, seq := range []uint64{10, 20, 30, 40, 50} {
		require.NoError(t, l.SaveSnapshot(seq, snapshotData(seq, sizes[seq])))
	}
	require.Error(t, l.SaveSnapshot(101, nil), "beyond the last event")

	seqs, err := l.snapshotSeqs()
	require.NoError(t, err)
	require.Equal(t, []uint64{50, 40, 30}, seqs)

	snap, err := l.LatestSnapshot(nil)
	require.NoError(t, err)
	require.Equal(t, uint64(50), snap.Seq)
	require.Equal(t, snapshotData(50, 2000), snap.Data)
	require.Empty(t, snap.Skipped)

	// Damage the newest: flip a byte of its data.
	k := snapshotKey(50, 1)
	v, closer, err := l.db.Get(k)
	require.NoError(t, err)
	bad := bytes.Clone(v)
	closer.Close()
	bad[17] ^= 0x20
	require.NoError(t, l.db.Set(k, bad, pebble.Sync))

	snap, err = l.LatestSnapshot(nil)
	require.NoError(t, err)
	require.Equal(t, uint64(40), snap.Seq, "damaged newest skipped")
	require.Len(t, snap.Skipped, 1)
	require.Contains(t, snap.Skipped[0].Error(), "snapshot at 50 damaged")

	// The caller's verify function rejects the next one.
	rejected := errors.New("does not deserialize")
	snap, err = l.LatestSnapshot(func(seq uint64, data []byte) error {
		if seq == 40 {
			return rejected
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, uint64(30), snap.Seq)
	require.Equal(t, snapshotData(30, sizes[30]), snap.Data)
	require.Len(t, snap.Skipped, 2)
	require.ErrorIs(t, snap.Skipped[1], rejected)

	// A missing chunk is damage too.
	require.NoError(t, l.db.Delete(snapshotKey(30, 2), pebble.Sync))
	_, err = l.LatestSnapshot(func(seq uint64, data []byte) error {
		if seq == 40 {
			return rejected
		}
		return nil
	})
	require.ErrorIs(t, err, ErrNoSnapshot)
	require.Contains(t, err.Error(), "chunk 2 missing")

	// Replacing the damaged one repairs it, and survives reopening.
	require.NoError(t, l.SaveSnapshot(50, snapshotData(50, 2000)))
	require.NoError(t, l.Close())
	l = openTest(t, dir, Options{SnapshotsKept: 3})
	snap, err = l.LatestSnapshot(nil)
	require.NoError(t, err)
	require.Equal(t, uint64(50), snap.Seq)
	require.Equal(t, snapshotData(50, 2000), snap.Data)
}
