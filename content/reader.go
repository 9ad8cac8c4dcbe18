package content

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
)

// errGone reports a reference whose body was released or reclaimed.
var errGone = fmt.Errorf("%w (released)", ErrNotFound)

// pinned is a record held against deletion while it is read.
type pinned struct {
	g   *segment
	f   *os.File
	loc location
	h   recordHeader
}

// pin finds the record of k, holds its segment, and reads and checks its
// header against the reference. The caller must call unpin unless pin
// returns an error. A read-only store whose view of the directory may be
// older than the record reads the directory again and looks once more.
func (s *Store) pin(k key, check uint32) (pinned, error) {
	p, gen, unseen, err := s.pinOnce(k, check)
	if err != nil && unseen && s.readOnly {
		if rerr := s.refreshSince(gen); rerr != nil {
			return pinned{}, fmt.Errorf("%w (and reading the store again failed: %v)", err, rerr)
		}
		p, _, _, err = s.pinOnce(k, check)
	}
	return p, err
}

// pinOnce is pin on the current view. For a read-only store it also
// returns the view's generation and whether a failure could be the view's
// age (see mayBeUnseen).
func (s *Store) pinOnce(k key, check uint32) (p pinned, gen uint64, unseen bool, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return pinned{}, 0, false, ErrClosed
	}
	gen = s.ro.gen
	loc, g := s.resolveLocked(k)
	if g == nil {
		unseen = s.readOnly && s.mayBeUnseen(k, nil, loc)
		s.mu.Unlock()
		return pinned{}, gen, unseen, errGone
	}
	if _, gone := g.released[loc.off]; gone {
		s.mu.Unlock()
		return pinned{}, gen, false, errGone
	}
	if s.readOnly && s.mayBeUnseen(k, g, loc) {
		// Beyond the records the view checked: the writer may be in the
		// middle of writing it.
		s.mu.Unlock()
		return pinned{}, gen, true, fmt.Errorf("segment %016x has no record at offset %d yet: %w", g.id, loc.off, ErrNotFound)
	}
	f, err := s.acquireLocked(g)
	s.mu.Unlock()
	if err != nil {
		// A segment deleted since a read-only view was read.
		return pinned{}, gen, s.readOnly && errors.Is(err, fs.ErrNotExist), err
	}
	p, err = s.readPinned(g, f, loc, k, check)
	return p, gen, false, err
}

// readPinned reads and checks the header of the record of k at loc in g,
// which the caller acquired as f.
func (s *Store) readPinned(g *segment, f *os.File, loc location, k key, check uint32) (pinned, error) {
	p := pinned{g: g, f: f, loc: loc}
	hb := make([]byte, recordHeaderSize)
	if _, err := f.ReadAt(hb, loc.off); err != nil {
		s.unpin(p)
		if errors.Is(err, io.EOF) {
			return pinned{}, fmt.Errorf("segment %016x has no record at offset %d: %w", g.id, loc.off, ErrNotFound)
		}
		return pinned{}, err
	}
	h, c, err := decodeRecordHeader(hb)
	switch {
	case errors.Is(err, ErrCorrupt):
		s.unpin(p)
		return pinned{}, fmt.Errorf("segment %016x offset %d: %w", g.id, loc.off, err)
	case err != nil:
		s.unpin(p)
		return pinned{}, fmt.Errorf("segment %016x offset %d: %v: %w", g.id, loc.off, err, ErrNotFound)
	case c != check || h.key != k:
		s.unpin(p)
		return pinned{}, fmt.Errorf("segment %016x offset %d holds another record: %w", g.id, loc.off, ErrNotFound)
	}
	p.h = h
	return p, nil
}

func (s *Store) unpin(p pinned) { s.releaseSegment(p.g, p.f) }

// Open returns the body with reference ref as a stream of exactly the bytes
// that were committed. The body is checked against its checksum before Open
// returns: a damaged body is reported (the error wraps ErrCorrupt and names
// the segment and offset) and never served. A body larger than InlineLimit
// is streamed from the file and checked again as it streams; if the file
// changed underneath, Read returns an ErrCorrupt error instead of io.EOF.
// Reads are safe while writes, releases and compactions go on; the caller
// must Close the reader.
func (s *Store) Open(ref string) (io.ReadCloser, error) {
	k, check, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	p, err := s.pin(k, check)
	if err != nil {
		return nil, fmt.Errorf("cdb: open %s: %w", ref, err)
	}
	bodyOff := p.loc.off + recordHeaderSize
	damaged := func() error {
		return fmt.Errorf("cdb: open %s: body in segment %016x at offset %d (%d bytes): %w",
			ref, p.g.id, bodyOff, p.h.bodyLen, ErrCorrupt)
	}
	if p.h.bodyLen <= int64(s.opts.InlineLimit) {
		b := make([]byte, p.h.bodyLen)
		_, err := p.f.ReadAt(b, bodyOff)
		s.unpin(p)
		if errors.Is(err, io.EOF) {
			return nil, damaged()
		}
		if err != nil {
			return nil, fmt.Errorf("cdb: open %s: %w", ref, err)
		}
		if checksum(b) != p.h.bodyCRC {
			return nil, damaged()
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	c, err := crcOf(io.NewSectionReader(p.f, bodyOff, p.h.bodyLen), make([]byte, 64<<10))
	if err != nil || c != p.h.bodyCRC {
		s.unpin(p)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("cdb: open %s: %w", ref, err)
		}
		return nil, damaged()
	}
	return &bodyReader{
		s:       s,
		p:       p,
		r:       io.NewSectionReader(p.f, bodyOff, p.h.bodyLen),
		crc:     crc32.New(castagnoli),
		damaged: damaged,
	}, nil
}

// bodyReader streams a large body and checks it once more as it goes.
type bodyReader struct {
	s       *Store
	p       pinned
	r       *io.SectionReader
	crc     hash.Hash32
	read    int64
	damaged func() error
	closed  bool
}

func (b *bodyReader) Read(buf []byte) (int, error) {
	if b.closed {
		return 0, os.ErrClosed
	}
	n, err := b.r.Read(buf)
	b.crc.Write(buf[:n])
	b.read += int64(n)
	if err == io.EOF && (b.read != b.p.h.bodyLen || b.crc.Sum32() != b.p.h.bodyCRC) {
		return n, b.damaged()
	}
	return n, err
}

func (b *bodyReader) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.s.unpin(b.p)
	return nil
}

// Exists reports whether ref names a stored body that has not been
// released. It reads the record header, not the body.
func (s *Store) Exists(ref string) bool {
	k, check, err := parseRef(ref)
	if err != nil {
		return false
	}
	p, err := s.pin(k, check)
	if err != nil {
		return false
	}
	s.unpin(p)
	return true
}

// Release tells the store that nothing needs the body of ref any more; its
// space is reclaimed once its whole segment is released, or by compaction.
// Release is idempotent: releasing a body again, or one already reclaimed,
// returns nil. The release mark is synced with the next sync round rather
// than before Release returns: the daemon calls Release once the
// ContentReleased event is durable, and a mark lost in a crash only delays
// reclaiming the space until ReleaseOrphans at the next start-up.
func (s *Store) Release(ref string) error {
	if s.readOnly {
		return fmt.Errorf("cdb: release %s: %w", ref, ErrReadOnly)
	}
	k, check, err := parseRef(ref)
	if err != nil {
		return err
	}
	// Compaction may move the body between reading its header and taking
	// the lock again; then look again.
	for range 8 {
		p, err := s.pin(k, check)
		if errors.Is(err, errGone) {
			return nil
		}
		if errors.Is(err, ErrCorrupt) {
			return s.releaseDamaged(ref, k)
		}
		if err != nil {
			return fmt.Errorf("cdb: release %s: %w", ref, err)
		}
		s.mu.Lock()
		s.releaseSegmentLocked(p.g, p.f)
		loc, g := s.resolveLocked(k)
		if g != p.g || loc != p.loc {
			s.mu.Unlock()
			continue
		}
		if _, gone := g.released[loc.off]; gone {
			s.mu.Unlock()
			return nil
		}
		err = s.releaseLocked(g, k, loc, relEntry{off: loc.off, length: p.h.recordLen(), check: check})
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("cdb: release %s: %w", ref, err)
		}
		return nil
	}
	return fmt.Errorf("cdb: release %s: body moved too often", ref)
}

// releaseDamaged releases a record whose header is damaged: its length
// comes from the segment's index instead.
func (s *Store) releaseDamaged(ref string, k key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	loc, g := s.resolveLocked(k)
	if g == nil {
		return nil
	}
	if _, gone := g.released[loc.off]; gone {
		return nil
	}
	var length int64
	if !g.sealed {
		for _, e := range g.index {
			if e.off == loc.off {
				length = e.length
			}
		}
	} else {
		f, err := s.acquireLocked(g)
		if err != nil {
			return fmt.Errorf("cdb: release %s: %w", ref, err)
		}
		entries, _, err := readFooter(f, g.fileSize)
		s.releaseSegmentLocked(g, f)
		if err != nil {
			return fmt.Errorf("cdb: release %s: %w", ref, err)
		}
		for _, e := range entries {
			if e.off == loc.off {
				length = e.length
			}
		}
	}
	if length == 0 {
		return fmt.Errorf("cdb: release %s: segment %016x has no record at offset %d: %w", ref, g.id, loc.off, ErrNotFound)
	}
	if err := s.releaseLocked(g, k, loc, relEntry{off: loc.off, length: length}); err != nil {
		return fmt.Errorf("cdb: release %s: %w", ref, err)
	}
	return nil
}

// releaseLocked marks the record at loc in g released, on disk and in
// memory, and deletes g once nothing in it is live.
func (s *Store) releaseLocked(g *segment, k key, loc location, e relEntry) error {
	if err := s.appendReleaseLocked(g, e); err != nil {
		return err
	}
	g.markReleased(loc.off, e.length)
	if r, ok := s.relocated[k]; ok && r == loc {
		delete(s.relocated, k)
	}
	s.counters.releases.Add(1)
	if g.sealed && g.live() <= 0 {
		s.deleteSegmentLocked(g)
	}
	s.kickSync()
	return nil
}
