package content

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// Body describes a stored body, as Scan reports it.
type Body struct {
	Ref      string
	Envelope Envelope
	Size     int64     // body bytes
	Stamp    time.Time // when it was committed
	// Err is set when the record's header or envelope is damaged; the
	// other fields are then as far as they could be read. Open reports
	// whether the body itself is intact.
	Err error
}

// Scan calls fn for every body that is stored and not released, segment by
// segment in the order segments were created and within a segment in the
// order the bodies were written, until fn returns an error, which Scan
// returns. Scan reads record headers and envelopes, not bodies. Bodies
// committed, released or moved while Scan runs may or may not be reported,
// but none is reported twice.
//
// A read-only store (OpenReadOnly) reads the directory again first, so that
// Scan lists the bodies as the store holds them when it is called.
func (s *Store) Scan(ctx context.Context, fn func(Body) error) error {
	if s.readOnly {
		if err := s.Refresh(); err != nil {
			return err
		}
	}
	return s.walk(ctx, func(f *os.File, seg uint64, e footerEntry) error {
		return fn(readBodyInfo(f, seg, e))
	})
}

// ReleaseOrphans releases every live body committed before this Store was
// opened whose reference referenced does not know, and returns how many it
// released. The daemon calls it at start-up, once the projections are
// rebuilt from the log, with a function that reports whether a queued
// message still has the reference: it reclaims the bodies whose Commit or
// TxnReceived append never completed before a crash, and those whose
// release mark was lost. Bodies committed since Open are never touched, so
// a body whose TxnReceived is still being appended is safe. It reads only
// segment indexes, not records.
func (s *Store) ReleaseOrphans(ctx context.Context, referenced func(ref string) bool) (int, error) {
	if s.readOnly {
		return 0, fmt.Errorf("cdb: release orphans: %w", ErrReadOnly)
	}
	var orphans []string
	err := s.walk(ctx, func(_ *os.File, _ uint64, e footerEntry) error {
		if e.stamp < s.openedAt && !referenced(e.ref()) {
			orphans = append(orphans, e.ref())
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for i, ref := range orphans {
		if err := s.Release(ref); err != nil {
			return i, err
		}
	}
	return len(orphans), nil
}

// walk calls fn for the index entry of every live record, with a
// descriptor of its segment.
func (s *Store) walk(ctx context.Context, fn func(f *os.File, seg uint64, e footerEntry) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	ids := make([]uint64, 0, len(s.segments))
	for id := range s.segments {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		if err := s.walkSegment(ctx, id, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) walkSegment(ctx context.Context, id uint64, fn func(f *os.File, seg uint64, e footerEntry) error) error {
	s.mu.Lock()
	g := s.segments[id]
	if g == nil {
		s.mu.Unlock()
		return nil
	}
	sealed, size := g.sealed, g.fileSize
	var entries []footerEntry
	if !sealed {
		entries = slices.Clone(g.index)
	}
	f, err := s.acquireLocked(g)
	s.mu.Unlock()
	if err != nil {
		if s.readOnly && errors.Is(err, fs.ErrNotExist) {
			// The writer deleted the segment after this view was read:
			// its bodies were released or moved while Scan ran.
			return nil
		}
		return fmt.Errorf("cdb: scan segment %016x: %w", id, err)
	}
	defer s.releaseSegment(g, f)
	if sealed {
		if entries, _, err = readFooter(f, size); err != nil {
			return fmt.Errorf("cdb: scan segment %016x: %w", id, err)
		}
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		loc, cur := s.resolveLocked(e.key)
		_, released := g.released[e.off]
		s.mu.Unlock()
		if cur != g || loc.off != e.off || released {
			continue
		}
		if err := fn(f, g.id, e); err != nil {
			return err
		}
	}
	return nil
}

// readBodyInfo reads the header and envelope of the record e in f.
func readBodyInfo(f *os.File, seg uint64, e footerEntry) Body {
	hb := make([]byte, recordHeaderSize)
	if _, err := f.ReadAt(hb, e.off); err != nil {
		return Body{Ref: e.ref(), Err: fmt.Errorf("segment %016x offset %d: %w", seg, e.off, err)}
	}
	b := Body{Ref: e.ref()}
	h, check, err := decodeRecordHeader(hb)
	if err == nil && (h.key != e.key || h.recordLen() != e.length || check != e.check) {
		err = fmt.Errorf("header does not match the segment index: %w", ErrCorrupt)
	}
	if err != nil {
		b.Err = fmt.Errorf("segment %016x offset %d: %w", seg, e.off, err)
		return b
	}
	b.Size, b.Stamp = h.bodyLen, time.Unix(0, h.stamp).UTC()
	eb := make([]byte, h.envLen)
	if _, err := f.ReadAt(eb, e.off+recordHeaderSize+h.bodyLen); err != nil {
		b.Err = fmt.Errorf("segment %016x offset %d: envelope: %w", seg, e.off, err)
		return b
	}
	if checksum(eb) != h.envCRC {
		b.Err = fmt.Errorf("segment %016x offset %d: envelope: %w", seg, e.off, ErrCorrupt)
		return b
	}
	env, err := decodeEnvelope(eb)
	if err != nil {
		b.Err = fmt.Errorf("segment %016x offset %d: %w", seg, e.off, err)
		return b
	}
	b.Envelope = env
	return b
}
