package content

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"time"
)

// compactLoop compacts every CompactInterval until Close.
func (s *Store) compactLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := s.Compact(s.ctx); err != nil && s.ctx.Err() == nil {
				s.log.Error("compaction", "err", err)
			}
		case <-s.quit:
			return
		}
	}
}

// Compact reclaims the space of released bodies in segments that are still
// pinned by a few live ones. A sealed segment that has been sealed for at
// least CompactAge and whose live bytes are below CompactLive of its data
// is compacted: its live bodies are copied into a new segment, which is
// synced, and then it is deleted. References do not change: the store
// keeps, for every moved body, where it is now. Compact runs in the
// background every CompactInterval; it is exported for tests and tools.
func (s *Store) Compact(ctx context.Context) error {
	if s.readOnly {
		return fmt.Errorf("cdb: compact %s: %w", s.dir, ErrReadOnly)
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	for {
		batch := s.pickCompaction()
		if len(batch) == 0 {
			return nil
		}
		if err := s.compactBatch(ctx, batch); err != nil {
			return err
		}
	}
}

// pickCompaction chooses the oldest segments to compact, as many as fit in
// one new segment (at least one).
func (s *Store) pickCompaction() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.err != nil {
		return nil
	}
	now := s.now().UnixNano()
	var cands []*segment
	for _, g := range s.segments {
		if !g.sealed || g.doomed || g.damaged || g.single || g.live() <= 0 {
			continue
		}
		if now-g.sealedAt < int64(s.opts.CompactAge) {
			continue
		}
		if float64(g.liveBytes()) >= s.opts.CompactLive*float64(g.dataBytes) {
			continue
		}
		cands = append(cands, g)
	}
	slices.SortFunc(cands, func(a, b *segment) int { return cmpUint64(a.id, b.id) })
	var batch []uint64
	var total int64
	for _, g := range cands {
		if len(batch) > 0 && total+g.liveBytes() > s.opts.SegmentSize {
			break
		}
		batch = append(batch, g.id)
		total += g.liveBytes()
	}
	return batch
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// moved is a body compaction copied.
type moved struct {
	key    key
	from   location
	off    int64 // in the new segment
	length int64
	stamp  int64
	check  uint32
}

// compactBatch copies the live bodies of the segments ids into one new
// segment and deletes them. The order of the steps is what makes it crash
// safe: the new segment is complete and synced (file and directory entry)
// before any source is deleted, and Open resolves the two copies a crash in
// between leaves.
func (s *Store) compactBatch(ctx context.Context, ids []uint64) error {
	type source struct {
		g       *segment
		f       *os.File
		size    int64
		entries []footerEntry
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	var srcs []source
	for _, id := range ids {
		g := s.segments[id]
		if g == nil || g.doomed {
			continue
		}
		f, err := s.acquireLocked(g)
		if err != nil {
			s.mu.Unlock()
			for _, src := range srcs {
				s.releaseSegment(src.g, src.f)
			}
			return fmt.Errorf("cdb: compact: %w", err)
		}
		srcs = append(srcs, source{g: g, f: f, size: g.fileSize})
	}
	outID := s.allocIDLocked()
	s.mu.Unlock()
	defer func() {
		for _, src := range srcs {
			s.releaseSegment(src.g, src.f)
		}
	}()
	markDamaged := func(g *segment, err error) {
		s.mu.Lock()
		g.damaged = true
		s.mu.Unlock()
		s.log.Error("segment damaged; not compacting it", "segment", fmt.Sprintf("%016x", g.id), "err", err)
	}
	for i := range srcs {
		entries, _, err := readFooter(srcs[i].f, srcs[i].size)
		if err != nil {
			markDamaged(srcs[i].g, err)
			return nil
		}
		srcs[i].entries = entries
	}

	path := s.segmentPath(outID)
	out, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("cdb: compact: %w", err)
	}
	abandon := func(err error) error {
		out.Close()
		os.Remove(path)
		return err
	}
	now := s.now().UnixNano()
	if _, err := out.Write(fileHeader{kind: kindCompacted, id: outID, created: now}.encode()); err != nil {
		return abandon(fmt.Errorf("cdb: compact: %w", err))
	}
	var copied []moved
	off := int64(fileHeaderSize)
	buf := make([]byte, 64<<10)
	for _, src := range srcs {
		for _, e := range src.entries {
			if err := ctx.Err(); err != nil {
				return abandon(err)
			}
			s.mu.Lock()
			loc, cur := s.resolveLocked(e.key)
			_, released := src.g.released[e.off]
			s.mu.Unlock()
			if cur != src.g || loc.off != e.off || released {
				continue
			}
			h, check, err := copyRecord(out, off, src.f, e, buf)
			if err != nil {
				if errors.Is(err, ErrCorrupt) {
					markDamaged(src.g, err)
					return abandon(nil)
				}
				return abandon(fmt.Errorf("cdb: compact: %w", err))
			}
			copied = append(copied, moved{key: e.key, from: location{seg: src.g.id, off: e.off}, off: off,
				length: e.length, stamp: h.stamp, check: check})
			off += e.length
		}
	}
	var size int64
	if len(copied) > 0 {
		footer := make([]footerEntry, len(copied))
		for i, m := range copied {
			footer[i] = footerEntry{off: m.off, key: m.key, length: m.length, stamp: m.stamp, check: m.check}
		}
		if size, err = writeSeal(out, off, footer, now); err != nil {
			return abandon(fmt.Errorf("cdb: compact: %w", err))
		}
		if err := datasync(out); err != nil {
			return abandon(fmt.Errorf("cdb: compact: %w", err))
		}
		if err := syncDir(s.dir); err != nil {
			return abandon(fmt.Errorf("cdb: compact: %w", err))
		}
		s.counters.syncs.Add(2)
		if err := out.Close(); err != nil {
			return abandon(fmt.Errorf("cdb: compact: %w", err))
		}
	} else {
		abandon(nil)
	}

	// Publish: from here on the copies are the bodies.
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *segment
	if len(copied) > 0 {
		c = &segment{id: outID, kind: kindCompacted, sealed: true, sealedAt: now, fileSize: size,
			count: int64(len(copied)), dataBytes: off - fileHeaderSize}
		s.segments[outID] = c
	}
	var copiedBytes int64
	for _, m := range copied {
		copiedBytes += m.length
		loc, cur := s.resolveLocked(m.key)
		live := cur != nil && loc == m.from
		if live {
			_, gone := cur.released[m.from.off]
			live = !gone
		}
		if live {
			s.relocated[m.key] = location{seg: outID, off: m.off}
			continue
		}
		// Released while it was being copied.
		if err := s.appendReleaseLocked(c, relEntry{off: m.off, length: m.length}); err != nil {
			s.log.Error("marking a released copy", "segment", fmt.Sprintf("%016x", outID), "err", err)
		}
		c.markReleased(m.off, m.length)
	}
	for _, src := range srcs {
		s.deleteSegmentLocked(src.g)
	}
	s.counters.compactions.Add(uint64(len(srcs)))
	s.counters.copied.Add(uint64(copiedBytes))
	if c != nil && c.live() <= 0 {
		s.deleteSegmentLocked(c)
	}
	s.log.Debug("compacted", "segments", len(srcs), "into", fmt.Sprintf("%016x", outID),
		"bodies", len(copied), "bytes", copiedBytes)
	return nil
}

// copyRecord copies the record e of src to dst at off, checking its header
// against the index and its body and envelope against their checksums as
// it goes, so that damage is never copied into a healthy segment.
func copyRecord(dst *os.File, off int64, src *os.File, e footerEntry, buf []byte) (recordHeader, uint32, error) {
	hb := make([]byte, recordHeaderSize)
	if _, err := src.ReadAt(hb, e.off); err != nil {
		return recordHeader{}, 0, err
	}
	h, check, err := decodeRecordHeader(hb)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("%v: %w", err, ErrCorrupt)
		}
		return recordHeader{}, 0, fmt.Errorf("offset %d: %w", e.off, err)
	}
	if h.key != e.key || h.recordLen() != e.length {
		return recordHeader{}, 0, fmt.Errorf("offset %d: header does not match the index: %w", e.off, ErrCorrupt)
	}
	if _, err := dst.WriteAt(hb, off); err != nil {
		return recordHeader{}, 0, err
	}
	parts := []struct {
		at, n int64
		crc   uint32
	}{
		{e.off + recordHeaderSize, h.bodyLen, h.bodyCRC},
		{e.off + recordHeaderSize + h.bodyLen, int64(h.envLen), h.envCRC},
	}
	at := off + recordHeaderSize
	for _, p := range parts {
		sum := crc32.New(castagnoli)
		r := io.TeeReader(io.NewSectionReader(src, p.at, p.n), sum)
		n, err := io.CopyBuffer(io.NewOffsetWriter(dst, at), r, buf)
		if err != nil {
			return recordHeader{}, 0, err
		}
		if n != p.n || sum.Sum32() != p.crc {
			return recordHeader{}, 0, fmt.Errorf("offset %d: %w", e.off, ErrCorrupt)
		}
		at += p.n
	}
	return h, check, nil
}
