package log

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Iterator reads events in sequence order from the live log and the
// archive as one gapless sequence. It sees the events that were durable when
// it was created. An Iterator is not safe for concurrent use.
//
//	it := l.Iter(from)
//	defer it.Close()
//	for it.Next() {
//		e := it.Event()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
type Iterator struct {
	l    *Log
	next uint64 // the sequence number Next must produce
	end  uint64 // the last one it produces

	live    *pebble.Iterator
	liveOK  bool
	liveSeq uint64

	waiting []segmentMeta    // segments not opened yet, by first seq
	open    []*segmentCursor // segments being read
	ev      Event
	err     error
	closed  bool
	// separate gives every string of an event an allocation of its own
	// (decodeEventStrings); subscriptions set it.
	separate bool
}

// Iter returns an iterator over the events from sequence number from (1 if
// from is 0) to LastSeq as it is now. A damaged record, a missing one, or an
// event type this version does not know stops the iteration with a
// *RecordError naming the sequence number; nothing is skipped.
//
// Iter is made for folding events, as replay does: the strings of an event
// are substrings of one copy of its record (one allocation per event), so a
// string kept after its event is dropped keeps that copy, a few hundred
// bytes, alive. A reader that keeps strings for long clones them
// (strings.Clone, unique.Make), as the projections do, or reads with
// Subscribe or Get, whose strings are allocations of their own.
func (l *Log) Iter(from uint64) *Iterator {
	return l.iter(from, l.durable.Load())
}

func (l *Log) iter(from, end uint64) *Iterator {
	if from == 0 {
		from = 1
	}
	it := &Iterator{l: l, next: from, end: end}
	if l.isClosed.Load() {
		it.err = ErrClosed
		return it
	}
	if from > end {
		return it
	}
	lo, hi := makeEventKey(from), makeEventKey(end+1)
	live, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lo[:], UpperBound: hi[:]})
	if err != nil {
		it.err = fmt.Errorf("log: read from %d: %w", from, err)
		return it
	}
	it.live = live
	it.setLive(live.First())
	it.waiting = l.archive.from(from)
	return it
}

func (it *Iterator) setLive(ok bool) {
	it.liveOK = ok
	if ok {
		seq, good := eventKeySeq(it.live.Key())
		if !good {
			it.err = &RecordError{Seq: it.next, Where: "live log", Err: fmt.Errorf("malformed key %x", it.live.Key())}
			it.liveOK = false
			return
		}
		it.liveSeq = seq
	} else if err := it.live.Error(); err != nil {
		it.err = &RecordError{Seq: it.next, Where: "live log", Err: err}
	}
}

// Next moves to the next event and reports whether there is one.
func (it *Iterator) Next() bool {
	if it.err != nil || it.closed || it.next > it.end {
		return false
	}
	for {
		// Open the segments that may hold it.next.
		for len(it.waiting) > 0 && it.waiting[0].first <= it.next {
			m := it.waiting[0]
			it.waiting = it.waiting[1:]
			r, err := openSegment(it.l.archive.dir, m, it.l.archive.dec)
			if err != nil {
				it.err = &RecordError{Seq: it.next, Where: "archive segment " + segmentName(m.num), Err: err}
				return false
			}
			c := &segmentCursor{r: r}
			c.seek(it.next)
			if c.err != nil {
				r.Close()
				it.err = c.err
				return false
			}
			if c.valid {
				it.open = append(it.open, c)
			} else {
				r.Close()
			}
		}
		// Take the lowest sequence number on offer.
		const none = -2
		best := none // index into open, or -1 for the live log
		var seq uint64
		if it.liveOK {
			best, seq = -1, it.liveSeq
		}
		for i, c := range it.open {
			if best == none || c.seq < seq {
				best, seq = i, c.seq
			}
		}
		if best == none {
			it.err = &RecordError{Seq: it.next, Where: "live log and archive", Err: ErrMissing}
			return false
		}
		switch {
		case seq < it.next:
			// A duplicate: the event is in a segment and still in the live
			// log (an Archive pass is between sealing the segment and
			// removing the live copies).
			if !it.advance(best) {
				return false
			}
			continue
		case seq > it.next:
			it.err = &RecordError{Seq: it.next, Where: "live log and archive", Err: ErrMissing}
			return false
		}
		it.ev = Event{}
		if best == -1 {
			rec, err := it.live.ValueAndErr()
			if err == nil {
				err = decodeRecord(rec, seq, &it.ev, it.separate)
			}
			if err != nil {
				it.err = &RecordError{Seq: seq, Where: "live log", Err: err}
				return false
			}
		} else if err := it.open[best].decode(&it.ev, it.separate); err != nil {
			it.err = err
			return false
		}
		it.next++
		it.advance(best)
		return true
	}
}

// advance moves source best (-1 for the live log) past its current record.
func (it *Iterator) advance(best int) bool {
	if best == -1 {
		it.setLive(it.live.Next())
		return it.err == nil
	}
	c := it.open[best]
	if !c.next() {
		if c.err != nil {
			it.err = c.err
			return false
		}
		c.r.Close()
		it.open = append(it.open[:best], it.open[best+1:]...)
	}
	return true
}

// Event returns the current event. It stays valid after Next.
func (it *Iterator) Event() Event { return it.ev }

// Err returns the error that stopped the iteration, if any.
func (it *Iterator) Err() error { return it.err }

// Close releases the iterator.
func (it *Iterator) Close() error {
	if it.closed {
		return nil
	}
	it.closed = true
	var err error
	if it.live != nil {
		err = it.live.Close()
	}
	for _, c := range it.open {
		if cerr := c.r.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	it.open = nil
	return err
}
