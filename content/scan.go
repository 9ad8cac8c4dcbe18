package content

import (
	"context"
	"encoding/binary"
	"fmt"
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
func (s *Store) Scan(ctx context.Context, fn func(Body) error) error {
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
		if err := s.scanSegment(ctx, id, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) scanSegment(ctx context.Context, id uint64, fn func(Body) error) error {
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
		if err := fn(readBodyInfo(f, g.id, e)); err != nil {
			return err
		}
	}
	return nil
}

// readBodyInfo reads the header and envelope of the record e in f.
func readBodyInfo(f *os.File, seg uint64, e footerEntry) Body {
	hb := make([]byte, recordHeaderSize)
	if _, err := f.ReadAt(hb, e.off); err != nil {
		return Body{Ref: formatRef(e.key, 0), Err: fmt.Errorf("segment %016x offset %d: %w", seg, e.off, err)}
	}
	b := Body{Ref: formatRef(e.key, binary.LittleEndian.Uint32(hb[60:]))}
	h, _, err := decodeRecordHeader(hb)
	if err == nil && (h.key != e.key || h.recordLen() != e.length) {
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
