package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// A snapshot is stored under the keys 's' seq chunk: chunk 0 is the header,
// chunks 1..n hold the data in pieces of snapshotChunkSize, so that a large
// projection state does not become one huge Pebble value.
//
//	header: format u8 = 1, seq u64, data length u64, chunk count u32,
//	        CRC-32C of the data u32, time saved (Unix ns) i64,
//	        CRC-32C of the preceding 33 bytes u32
const (
	snapshotFormat     = 1
	snapshotHeaderSize = 37
	snapshotChunkSize  = 1 << 20
)

// ErrNoSnapshot is returned by LatestSnapshot when there is no snapshot
// that verifies.
var ErrNoSnapshot = errors.New("log: no usable snapshot")

// Snapshot is a saved projection state.
type Snapshot struct {
	// Seq is the sequence number of the last event the state covers;
	// recovery replays from Seq+1.
	Seq uint64
	// Data is the serialized state, opaque to the log.
	Data []byte
	// Saved is when SaveSnapshot stored it.
	Saved time.Time
	// Skipped lists the newer snapshots LatestSnapshot passed over, each
	// with the reason (damaged, or rejected by the verify function).
	Skipped []error
}

// SaveSnapshot durably stores data, a serialized projection state that
// covers the events up to and including seq, with a checksum. It then keeps
// only the Options.SnapshotsKept newest snapshots. seq must not be beyond
// LastSeq; a snapshot with the same seq is replaced.
func (l *Log) SaveSnapshot(seq uint64, data []byte) error {
	if l.readOnly {
		return ErrReadOnly
	}
	if last := l.durable.Load(); seq > last {
		return fmt.Errorf("log: snapshot at %d is beyond the last event %d", seq, last)
	}
	l.snapMu.Lock()
	defer l.snapMu.Unlock()
	if l.isClosed.Load() {
		return ErrClosed
	}
	chunks := (len(data) + snapshotChunkSize - 1) / snapshotChunkSize
	h := make([]byte, 0, snapshotHeaderSize)
	h = append(h, snapshotFormat)
	h = binary.BigEndian.AppendUint64(h, seq)
	h = binary.BigEndian.AppendUint64(h, uint64(len(data)))
	h = binary.BigEndian.AppendUint32(h, uint32(chunks))
	h = binary.BigEndian.AppendUint32(h, crc32.Checksum(data, crcTable))
	h = binary.BigEndian.AppendUint64(h, uint64(l.opts.Clock().UnixNano()))
	h = binary.BigEndian.AppendUint32(h, crc32.Checksum(h, crcTable))

	batch := l.db.NewBatchWithSize(len(data) + chunks*32 + 64)
	defer batch.Close()
	if err := batch.DeleteRange(snapshotKey(seq, 0), snapshotKey(seq+1, 0), nil); err != nil {
		return fmt.Errorf("log: save snapshot at %d: %w", seq, err)
	}
	if err := batch.Set(snapshotKey(seq, 0), h, nil); err != nil {
		return fmt.Errorf("log: save snapshot at %d: %w", seq, err)
	}
	for i := 0; i < chunks; i++ {
		end := min((i+1)*snapshotChunkSize, len(data))
		if err := batch.Set(snapshotKey(seq, uint32(i+1)), data[i*snapshotChunkSize:end], nil); err != nil {
			return fmt.Errorf("log: save snapshot at %d: %w", seq, err)
		}
	}
	seqs, err := l.snapshotSeqs()
	if err != nil {
		return fmt.Errorf("log: save snapshot at %d: %w", seq, err)
	}
	kept := 1 // the new one
	for _, s := range seqs {
		if s == seq {
			continue
		}
		if s < seq && kept >= l.opts.SnapshotsKept {
			if err := batch.DeleteRange(snapshotKey(s, 0), snapshotKey(s+1, 0), nil); err != nil {
				return fmt.Errorf("log: save snapshot at %d: drop the one at %d: %w", seq, s, err)
			}
			continue
		}
		kept++
	}
	if err := l.db.Apply(batch, pebble.Sync); err != nil {
		return fmt.Errorf("log: save snapshot at %d: %w", seq, err)
	}
	l.opts.Logger.Debug("snapshot saved", "seq", seq, "bytes", len(data))
	return nil
}

// snapshotSeqs returns the sequence numbers of the stored snapshots, newest
// first.
func (l *Log) snapshotSeqs() ([]uint64, error) {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSnapshot}, UpperBound: []byte{prefixSnapshot + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var seqs []uint64
	for ok := it.Last(); ok; {
		k := it.Key()
		if len(k) != 13 {
			return nil, fmt.Errorf("log: malformed snapshot key %x", k)
		}
		s := binary.BigEndian.Uint64(k[1:9])
		seqs = append(seqs, s)
		ok = it.SeekLT(snapshotKey(s, 0))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("log: list snapshots: %w", err)
	}
	return seqs, nil
}

// LatestSnapshot returns the newest snapshot that is intact and that verify
// accepts (verify may be nil). Verify gets the sequence number and data and
// returns an error to reject them, for example when the data does not
// deserialize. Newer snapshots that are damaged or rejected are skipped,
// listed in Snapshot.Skipped and logged as warnings. With none usable it
// returns an error wrapping ErrNoSnapshot, joined with the reasons.
func (l *Log) LatestSnapshot(verify func(seq uint64, data []byte) error) (Snapshot, error) {
	if l.isClosed.Load() {
		return Snapshot{}, ErrClosed
	}
	seqs, err := l.snapshotSeqs()
	if err != nil {
		return Snapshot{}, err
	}
	var skipped []error
	for _, seq := range seqs {
		snap, err := l.readSnapshot(seq)
		if err == nil && verify != nil {
			if verr := verify(seq, snap.Data); verr != nil {
				err = fmt.Errorf("log: snapshot at %d rejected: %w", seq, verr)
			}
		}
		if err != nil {
			l.opts.Logger.Warn("skipping snapshot", "seq", seq, "err", err)
			skipped = append(skipped, err)
			continue
		}
		snap.Skipped = skipped
		return snap, nil
	}
	return Snapshot{Skipped: skipped}, errors.Join(append([]error{ErrNoSnapshot}, skipped...)...)
}

// readSnapshot reads and checks the snapshot at seq.
func (l *Log) readSnapshot(seq uint64) (Snapshot, error) {
	bad := func(format string, args ...any) (Snapshot, error) {
		return Snapshot{}, fmt.Errorf("log: snapshot at %d damaged: %s", seq, fmt.Sprintf(format, args...))
	}
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: snapshotKey(seq, 0), UpperBound: snapshotKey(seq+1, 0)})
	if err != nil {
		return Snapshot{}, err
	}
	defer it.Close()
	if !it.First() {
		if err := it.Error(); err != nil {
			return bad("%v", err)
		}
		return bad("no header")
	}
	h, err := it.ValueAndErr()
	if err != nil {
		return bad("%v", err)
	}
	if binary.BigEndian.Uint32(it.Key()[9:]) != 0 || len(h) != snapshotHeaderSize ||
		crc32.Checksum(h[:33], crcTable) != binary.BigEndian.Uint32(h[33:]) {
		return bad("header checksum mismatch")
	}
	if h[0] != snapshotFormat || binary.BigEndian.Uint64(h[1:]) != seq {
		return bad("header format %d for seq %d", h[0], binary.BigEndian.Uint64(h[1:]))
	}
	size := binary.BigEndian.Uint64(h[9:])
	chunks := binary.BigEndian.Uint32(h[17:])
	sum := binary.BigEndian.Uint32(h[21:])
	saved := time.Unix(0, int64(binary.BigEndian.Uint64(h[25:]))).UTC()
	if size > uint64(chunks)*snapshotChunkSize {
		return bad("%d bytes in %d chunks", size, chunks)
	}
	data := make([]byte, 0, size)
	var n uint32
	for ok := it.Next(); ok; ok = it.Next() {
		n++
		if got := binary.BigEndian.Uint32(it.Key()[9:]); got != n {
			return bad("chunk %d missing", n)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return bad("%v", err)
		}
		data = append(data, v...)
	}
	if err := it.Error(); err != nil {
		return bad("%v", err)
	}
	if n != chunks || uint64(len(data)) != size {
		return bad("%d chunks of %d bytes, header says %d chunks of %d bytes", n, len(data), chunks, size)
	}
	if crc32.Checksum(data, crcTable) != sum {
		return bad("data %v", ErrChecksum)
	}
	return Snapshot{Seq: seq, Data: data, Saved: saved}, nil
}
