package log

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Group commit.
//
// Append encodes its events in the caller's goroutine and queues them. One
// committer goroutine takes everything queued (up to MaxOpenTAs appends),
// numbers the events, puts them into one Pebble batch and hands the batch
// to Pebble's commit pipeline, which writes it to the WAL and asks for a
// sync. A second goroutine waits for that sync, advances the durable
// sequence number and wakes the appenders and subscribers. While one group
// is being synced the committer already builds and writes the next, so the
// disk is kept busy with back-to-back syncs, and every append that arrives
// during a sync shares the next one: the seed's IBDB group commit, with
// max_commit_delay (MaxCommitDelay) and max_open_TAs (MaxOpenTAs) as its
// knobs.
//
// Pebble's own commit pipeline already lets concurrent synced commits share
// a WAL sync. The committer adds two things on top: one Pebble batch per
// group instead of one per append (the commit pipeline's per-batch work
// is serialised, and on two cores it was the bottleneck), and numbering in
// one place, so that the order of sequence numbers is the order of the
// WAL, which keeps the log gapless after a crash. BenchmarkAppend compares
// both ways (the "direct" variants).

// Request states: an append is pending until the committer takes it or its
// caller gives up waiting; whichever comes first decides.
const (
	reqPending int32 = iota
	reqTaken
	reqCancelled
)

// appendReq is one Append call on its way through the committer.
type appendReq struct {
	buf   []byte    // the records, back to back
	recs  []recSpan // where each record is in buf
	first uint64    // sequence number of the first event, set by the committer
	state atomic.Int32
	done  chan error
}

type recSpan struct {
	off, end int
	bodyCRC  uint32
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

// commitGroup is one Pebble batch of appends waiting for its sync.
type commitGroup struct {
	batch *pebble.Batch
	reqs  []*appendReq
	last  uint64
}

// Append adds events to the log as one atomic unit: after a crash either
// all of them are in the log or none is. It assigns each event its Seq, and
// its Time when that is zero, in place, and returns the sequence number of
// the last one once they are durable (synced to disk). Concurrent appends
// share syncs.
//
// If ctx is done before the committer has taken the events, Append returns
// ctx's error and the events are not appended. Once they are taken, Append
// waits for the outcome, which takes no longer than one sync, so that the
// caller always learns it: no error means the events are durable, and an
// error means they are not in the log – with one exception, a failed write
// or sync of the disk itself. Whether a failed sync reached the disk cannot
// be known, so after one the Log refuses all further appends; the process
// must reopen it, which recovers exactly what is durable. (Pebble itself
// treats a failed WAL write as fatal and stops the process.)
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
	r := reqPool.Get().(*appendReq)
	r.buf, r.recs = r.buf[:0], r.recs[:0]
	r.state.Store(reqPending)
	var now time.Time
	for i := range events {
		e := &events[i]
		if e.Time.IsZero() {
			if now.IsZero() {
				now = l.opts.Clock().Round(0).UTC()
			}
			e.Time = now
		}
		off := len(r.buf)
		var crc uint32
		r.buf, crc, err = appendRecord(r.buf, e)
		if err != nil {
			reqPool.Put(r)
			return 0, fmt.Errorf("log: append event %d of %d (%s %s): %w", i+1, len(events), e.Txn, typeName(e), err)
		}
		if len(r.buf)-off > maxRecordSize {
			reqPool.Put(r)
			return 0, fmt.Errorf("log: append event %d of %d (%s %s): %d bytes encoded, more than %d",
				i+1, len(events), e.Txn, typeName(e), len(r.buf)-off, maxRecordSize)
		}
		r.recs = append(r.recs, recSpan{off: off, end: len(r.buf), bodyCRC: crc})
	}
	if l.opts.directCommit {
		err = l.commitDirect(r)
	} else {
		err = l.enqueue(ctx, r)
	}
	if err != nil {
		return 0, err
	}
	for i := range events {
		events[i].Seq = r.first + uint64(i)
	}
	last := r.first + uint64(len(events)) - 1
	reqPool.Put(r)
	return last, nil
}

func typeName(e *Event) string {
	if e.Payload == nil {
		return "nil payload"
	}
	return e.Payload.EventType().String()
}

// enqueue hands r to the committer and waits for the outcome.
func (l *Log) enqueue(ctx context.Context, r *appendReq) error {
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return ErrClosed
	case l.failed != nil:
		err := l.failed
		l.mu.Unlock()
		return err
	}
	l.pending = append(l.pending, r)
	l.pendingEvents += len(r.recs)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqPending, reqCancelled) {
			// The committer skips it; r may still be in its queue, so r
			// does not go back to the pool.
			return ctx.Err()
		}
		return <-r.done
	}
}

// commitLoop is the committer goroutine.
func (l *Log) commitLoop() {
	defer close(l.commitDone)
	defer close(l.syncQ)
	var group []*appendReq
	for {
		group = l.takeGroup(group[:0])
		if group == nil {
			return
		}
		l.commit(group)
	}
}

// takeGroup waits for appends and returns the next group, or nil once the
// Log is closed.
func (l *Log) takeGroup(group []*appendReq) []*appendReq {
	var deadline <-chan time.Time
	expired := false
	for {
		select {
		case <-l.wake:
		case <-deadline:
			expired = true
		case <-l.closing:
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil
		}
		n := len(l.pending)
		if n == 0 {
			l.mu.Unlock()
			continue
		}
		if l.opts.MaxCommitDelay > 0 && n < l.opts.MaxOpenTAs && !expired {
			// Give other appends until the deadline to join the group.
			if deadline == nil {
				deadline = time.After(l.opts.MaxCommitDelay)
			}
			l.mu.Unlock()
			continue
		}
		n = min(n, l.opts.MaxOpenTAs)
		group = append(group, l.pending[:n]...)
		rest := copy(l.pending, l.pending[n:])
		clear(l.pending[rest:])
		l.pending = l.pending[:rest]
		for _, r := range group {
			l.pendingEvents -= len(r.recs)
		}
		more := rest > 0
		l.mu.Unlock()
		if more {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
		return group
	}
}

// commit numbers the events of group, writes them as one batch and queues
// the batch for its sync.
func (l *Log) commit(group []*appendReq) {
	size := 0
	for _, r := range group {
		size += len(r.buf) + len(r.recs)*16
	}
	batch := l.db.NewBatchWithSize(size)
	seq := l.nextSeq
	taken := make([]*appendReq, 0, len(group))
	for _, r := range group {
		if !r.state.CompareAndSwap(reqPending, reqTaken) {
			continue // its caller gave up before it was taken
		}
		r.first = seq + 1
		for _, s := range r.recs {
			seq++
			rec := r.buf[s.off:s.end]
			sealRecord(rec, s.bodyCRC, seq)
			k := makeEventKey(seq)
			if err := batch.Set(k[:], rec, nil); err != nil {
				panic(fmt.Sprintf("log: batch set: %v", err)) // only fails on a closed batch
			}
		}
		taken = append(taken, r)
	}
	if len(taken) == 0 {
		batch.Close()
		return
	}
	if err := l.db.ApplyNoSyncWait(batch, pebble.Sync); err != nil {
		err = l.fail(fmt.Errorf("log: write events %d-%d: %w", l.nextSeq+1, seq, err))
		batch.Close()
		for _, r := range taken {
			r.done <- err
		}
		return
	}
	l.nextSeq = seq
	l.syncQ <- &commitGroup{batch: batch, reqs: taken, last: seq}
}

// syncLoop waits for the sync of each group in turn.
func (l *Log) syncLoop() {
	defer close(l.syncDone)
	for g := range l.syncQ {
		err := g.batch.SyncWait()
		g.batch.Close()
		if err == nil {
			l.mu.Lock()
			err = l.failed
			l.mu.Unlock()
		}
		if err != nil {
			err = l.fail(fmt.Errorf("log: sync events up to %d: %w", g.last, err))
			for _, r := range g.reqs {
				r.done <- err
			}
			continue
		}
		l.durable.Store(g.last)
		l.broadcast()
		for _, r := range g.reqs {
			r.done <- nil
		}
	}
}

// fail records the first commit failure and returns it; later appends get
// it too.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = err
		l.opts.Logger.Error("event log failed; appends refused until it is reopened", "err", err)
		for _, r := range l.pending {
			if r.state.CompareAndSwap(reqPending, reqTaken) {
				r.done <- err
			}
		}
		l.pending = nil
	}
	return l.failed
}

// commitDirect commits r as a batch of its own, relying on Pebble's commit
// pipeline alone to share syncs between concurrent appends.
func (l *Log) commitDirect(r *appendReq) error {
	l.mu.Lock()
	closed, failed := l.closed, l.failed
	l.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if failed != nil {
		return failed
	}
	batch := l.db.NewBatchWithSize(len(r.buf) + len(r.recs)*16)
	l.directMu.Lock()
	seq := l.nextSeq
	r.first = seq + 1
	for _, s := range r.recs {
		seq++
		rec := r.buf[s.off:s.end]
		sealRecord(rec, s.bodyCRC, seq)
		k := makeEventKey(seq)
		if err := batch.Set(k[:], rec, nil); err != nil {
			panic(fmt.Sprintf("log: batch set: %v", err))
		}
	}
	// Numbering and writing under one lock keeps WAL order equal to
	// sequence order.
	err := l.db.ApplyNoSyncWait(batch, pebble.Sync)
	if err == nil {
		l.nextSeq = seq
	}
	l.directMu.Unlock()
	if err == nil {
		err = batch.SyncWait()
	}
	batch.Close()
	if err != nil {
		return l.fail(fmt.Errorf("log: append events %d-%d: %w", r.first, seq, err))
	}
	// The WAL is synced in order, so everything up to seq is durable.
	for {
		cur := l.durable.Load()
		if cur >= seq || l.durable.CompareAndSwap(cur, seq) {
			break
		}
	}
	l.broadcast()
	return nil
}
