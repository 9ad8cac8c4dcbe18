package log

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Group commit.
//
// Each Append encodes its events in the caller's goroutine, then, under
// commitMu, numbers them, puts them into a Pebble batch and hands it to
// Pebble's commit pipeline (ApplyNoSyncWait with Sync), which writes it to
// the WAL; outside the lock it waits for the WAL sync (SyncWait). Pebble
// marks ApplyNoSyncWait experimental; it is what lets the lock cover the
// write alone: Apply with Sync under the lock would give every append a
// sync of its own. Pebble's
// LogWriter syncs the WAL in a loop of its own: every batch written while a
// sync is in progress is covered by the next one, so concurrent appends
// share syncs without anyone waiting for a timer – the seed's IBDB group
// commit. Numbering and writing under one lock keeps the order of sequence
// numbers equal to the order of the WAL, which is what keeps the log
// gapless after a crash: WAL replay recovers a prefix.
//
// A committer goroutine of the log's own that gathered the appends of a
// group into one Pebble batch was measured against this and lost at every
// concurrency (docs/eventlog.md, "Measurements"): the hand-offs between
// appender, committer and sync waiter cost more than the per-batch work
// it saved in Pebble's pipeline. So the batching is Pebble's; the log adds
// the numbering, the durable watermark and the seed's knobs, which map onto
// Pebble's WALMinSyncInterval (see pebbleOptions).

// appendBuf holds the encoded records of one Append.
type appendBuf struct {
	buf  []byte
	recs []recSpan
}

type recSpan struct {
	off, end int
	bodyCRC  uint32
}

// Append adds events to the log as one atomic unit: after a crash either
// all of them are in the log or none is. It assigns each event its Seq, and
// its Time when that is zero, in place, and returns the sequence number of
// the last one once they are durable (synced to disk). Concurrent appends
// share syncs.
//
// If ctx is done before the events are written, Append returns ctx's error
// and they are not appended; once written, Append waits for the sync (one
// sync, plus Options.MaxCommitDelay at most), so that the caller always
// learns the outcome: no error means the events are durable, and an error
// means they are not in the log – with one exception, a failed write or
// sync of the disk itself. Whether a failed sync reached the disk cannot be
// known, so after one the Log refuses all further appends; the process must
// reopen it, which recovers exactly what is durable. (Pebble itself treats
// a failed WAL write as fatal and stops the process.)
//
// An event must encode to at most 16 MiB. Events are validated and encoded
// before anything is written, so an event that cannot be encoded (nil or
// foreign Payload) fails the whole call.
func (l *Log) Append(ctx context.Context, events ...Event) (lastSeq uint64, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	if l.readOnly {
		return 0, ErrReadOnly
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	a := l.appendBufs.Get().(*appendBuf)
	defer l.appendBufs.Put(a)
	a.buf, a.recs = a.buf[:0], a.recs[:0]
	var now time.Time
	for i := range events {
		e := &events[i]
		if e.Time.IsZero() {
			if now.IsZero() {
				now = l.opts.Clock().Round(0).UTC()
			}
			e.Time = now
		}
		off := len(a.buf)
		var crc uint32
		a.buf, crc, err = appendRecord(a.buf, e)
		if err != nil {
			return 0, fmt.Errorf("log: append event %d of %d (%s %s): %w", i+1, len(events), e.Txn, typeName(e), err)
		}
		if len(a.buf)-off > maxRecordSize {
			return 0, fmt.Errorf("log: append event %d of %d (%s %s): %d bytes encoded, more than %d",
				i+1, len(events), e.Txn, typeName(e), len(a.buf)-off, maxRecordSize)
		}
		a.recs = append(a.recs, recSpan{off: off, end: len(a.buf), bodyCRC: crc})
	}
	first, last, err := l.commit(ctx, a)
	if err != nil {
		return 0, err
	}
	for i := range events {
		events[i].Seq = first + uint64(i)
	}
	l.stats.appends.Add(1)
	l.stats.events.Add(uint64(len(events)))
	return last, nil
}

func typeName(e *Event) string {
	if e.Payload == nil {
		return "nil payload"
	}
	return e.Payload.EventType().String()
}

// commit numbers and writes the records of a, waits for their sync and
// advances the durable sequence number.
func (l *Log) commit(ctx context.Context, a *appendBuf) (first, last uint64, err error) {
	// Close waits for appends in progress (closeMu), so that none is cut
	// off between its write and its sync.
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.isClosed.Load() {
		return 0, 0, ErrClosed
	}
	batch := l.db.NewBatchWithSize(len(a.buf) + len(a.recs)*16)
	defer batch.Close()

	l.commitMu.Lock()
	if l.closed {
		l.commitMu.Unlock()
		return 0, 0, ErrClosed
	}
	if l.failed != nil {
		err := l.failed
		l.commitMu.Unlock()
		return 0, 0, err
	}
	if err := ctx.Err(); err != nil {
		l.commitMu.Unlock()
		return 0, 0, err
	}
	seq := l.nextSeq
	first = seq + 1
	for _, s := range a.recs {
		seq++
		rec := a.buf[s.off:s.end]
		sealRecord(rec, s.bodyCRC, seq)
		k := makeEventKey(seq)
		if err := batch.Set(k[:], rec, nil); err != nil {
			l.commitMu.Unlock()
			return 0, 0, fmt.Errorf("log: append: %w", err)
		}
	}
	l.syncWaiters.Add(1)
	defer l.syncWaiters.Add(-1)
	err = l.db.ApplyNoSyncWait(batch, pebble.Sync)
	if err == nil {
		l.nextSeq = seq
	}
	l.commitMu.Unlock()
	if err != nil {
		return 0, 0, l.fail(fmt.Errorf("log: write events %d-%d: %w", first, seq, err))
	}
	if err := batch.SyncWait(); err != nil {
		return 0, 0, l.fail(fmt.Errorf("log: sync events %d-%d: %w", first, seq, err))
	}
	// Pebble syncs the WAL in order and the WAL is in sequence order, so
	// everything up to seq is durable now.
	for {
		cur := l.durable.Load()
		if cur >= seq || l.durable.CompareAndSwap(cur, seq) {
			break
		}
	}
	l.broadcast()
	return first, seq, nil
}

// fail records the first write or sync failure and returns it; every later
// append gets it too.
func (l *Log) fail(err error) error {
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	if l.failed == nil {
		l.failed = fmt.Errorf("%w: %w", ErrFailed, err)
		l.opts.Logger.Error("event log failed; appends refused until it is reopened", "err", err)
	}
	return l.failed
}
