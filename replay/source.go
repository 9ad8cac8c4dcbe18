package replay

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/smx-mta/smx/log"
)

// Iterator reads events in sequence order. *log.Iterator is one.
type Iterator interface {
	// Next moves to the next event and reports whether there is one.
	Next() bool
	// Event returns the current event.
	Event() log.Event
	// Err returns what stopped the iteration early, if anything: a
	// damaged or missing record is an error, never skipped.
	Err() error
	Close() error
}

// Source is the event log as the replay engine reads it. FromLog adapts a
// *log.Log (opened with log.Open in smxd, log.OpenReadOnly in smxctl);
// Events holds a log in memory for tests.
type Source interface {
	// Iter returns an iterator over the events from sequence number from
	// (1 if 0) to LastSeq as it was when Iter was called.
	Iter(from uint64) Iterator
	// LastSeq is the sequence number of the last event.
	LastSeq() uint64
	// Get returns one event.
	Get(seq uint64) (log.Event, error)
	// LatestSnapshot returns the newest stored snapshot that verify
	// accepts, or an error wrapping log.ErrNoSnapshot.
	LatestSnapshot(verify func(seq uint64, data []byte) error) (log.Snapshot, error)
}

// SnapshotSaver stores snapshots; *log.Log is one.
type SnapshotSaver interface {
	SaveSnapshot(seq uint64, data []byte) error
}

// FromLog returns l as a Source.
func FromLog(l *log.Log) Source { return logSource{l} }

type logSource struct{ l *log.Log }

func (s logSource) Iter(from uint64) Iterator { return s.l.Iter(from) }
func (s logSource) LastSeq() uint64           { return s.l.LastSeq() }
func (s logSource) Get(seq uint64) (log.Event, error) {
	return s.l.Get(seq)
}
func (s logSource) LatestSnapshot(verify func(uint64, []byte) error) (log.Snapshot, error) {
	return s.l.LatestSnapshot(verify)
}

// Events is a log held in memory: events numbered 1..n in order, with
// snapshots. It is for tests, here and in the packages that build on the
// projections.
type Events struct {
	List      []log.Event
	Snapshots []log.Snapshot // any order
}

// Iter implements Source.
func (m *Events) Iter(from uint64) Iterator {
	if from == 0 {
		from = 1
	}
	return &sliceIter{events: m.List, next: int(min(from, uint64(len(m.List))+1)) - 1}
}

// LastSeq implements Source.
func (m *Events) LastSeq() uint64 { return uint64(len(m.List)) }

// Get implements Source.
func (m *Events) Get(seq uint64) (log.Event, error) {
	if seq == 0 || seq > uint64(len(m.List)) {
		return log.Event{}, fmt.Errorf("%w: %d", log.ErrNotFound, seq)
	}
	return m.List[seq-1], nil
}

// SaveSnapshot implements SnapshotSaver.
func (m *Events) SaveSnapshot(seq uint64, data []byte) error {
	if seq > uint64(len(m.List)) {
		return fmt.Errorf("snapshot at %d is beyond the last event %d", seq, len(m.List))
	}
	m.Snapshots = append(m.Snapshots, log.Snapshot{Seq: seq, Data: data})
	return nil
}

// LatestSnapshot implements Source.
func (m *Events) LatestSnapshot(verify func(uint64, []byte) error) (log.Snapshot, error) {
	// Newest first; the last saved wins among equal seqs.
	snaps := slices.Clone(m.Snapshots)
	slices.Reverse(snaps)
	slices.SortStableFunc(snaps, func(a, b log.Snapshot) int { return cmp.Compare(b.Seq, a.Seq) })
	var skipped []error
	for _, s := range snaps {
		if verify != nil {
			if err := verify(s.Seq, s.Data); err != nil {
				skipped = append(skipped, fmt.Errorf("snapshot at %d rejected: %w", s.Seq, err))
				continue
			}
		}
		s.Skipped = skipped
		return s, nil
	}
	return log.Snapshot{Skipped: skipped}, errors.Join(append([]error{log.ErrNoSnapshot}, skipped...)...)
}

type sliceIter struct {
	events []log.Event
	next   int
	cur    log.Event
}

func (it *sliceIter) Next() bool {
	if it.next >= len(it.events) {
		return false
	}
	it.cur = it.events[it.next]
	it.next++
	return true
}

func (it *sliceIter) Event() log.Event { return it.cur }
func (it *sliceIter) Err() error       { return nil }
func (it *sliceIter) Close() error     { return nil }
