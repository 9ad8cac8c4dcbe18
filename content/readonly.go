package content

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// Reading a store that another process has open.
//
// Open takes the store's lock and repairs what a crash left (it cuts and
// seals the segment that was receiving bodies, removes files, writes
// marks), so it must never run beside smxd. OpenReadOnly is for the tools
// that read while smxd runs (smxctl verify): it takes no lock, repairs
// nothing and writes nothing, and reads the files as the writer leaves
// them at any instant:
//
//   - A sealed segment is read through its footer, which never changes.
//   - A segment without a trailer (the one receiving bodies, a large body
//     being streamed, a compaction being written) is read from the start,
//     record by record, each checked against its checksums, up to the
//     first that is not complete: the writer appends whole records with
//     one pwrite, so a torn or short record at the end is one it has not
//     finished writing, and it is simply not there yet. The file is not
//     cut or sealed.
//   - Release marks are read up to the first incomplete one.
//   - Two copies of a body (a compaction caught between copying and
//     deleting its sources) are resolved as Open resolves them, in
//     memory: the newest copy serves, a release of any copy releases.
//
// That is a view of the directory as it was when it was read. The writer
// goes on: a reference the view does not know may be a body committed
// since, one a compaction moved, or one in a segment deleted since. When a
// lookup fails in a way staleness could explain (a segment newer than the
// view or not complete when it was read, a record beyond what the view
// read of a segment, a segment file gone), the view is read again and the
// lookup repeated once; a reference that is missing for good costs no
// rereading. Releases made after the view was read are not seen until the
// next reading (Refresh): Exists answers for the store as it was then.

// ErrReadOnly is returned by the writing methods (Create, Release,
// ReleaseOrphans, Compact) of a Store opened with OpenReadOnly.
var ErrReadOnly = errors.New("content store opened read-only")

// roView is the state of a read-only Store beside the segments and
// relocations it shares with a writing one. Guarded by Store.mu, except
// refreshMu, which serialises readings of the directory.
type roView struct {
	refreshMu sync.Mutex
	gen       uint64 // incremented by every reading
	// maxSeen is the highest segment id in the directory when it was
	// read; incomplete lists the segments that held no complete record
	// then. A reference into either is not known missing, only unseen.
	maxSeen    uint64
	incomplete map[uint64]bool
}

// OpenReadOnly opens the content store in dir for reading while another
// process may have it open with Open and go on committing, releasing and
// compacting. It takes no lock, runs no crash recovery and writes nothing
// in dir. Open, Exists, Scan, Stats and Accepting work as for a store
// opened with Open, on a view of the directory that is read again when a
// reference is not found in it (see the comment at the top of
// readonly.go); Create, Release, ReleaseOrphans and Compact return
// ErrReadOnly. Options that concern reading apply (InlineLimit, FreeSpace,
// DiskCheckInterval, MinDiskSpace, OkDiskSpace, Now, Logger).
func OpenReadOnly(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cdb: open %s read-only: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("cdb: open read-only: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("cdb: open %s read-only: not a directory", abs)
	}
	s := newStore(abs, opts, true)
	if err := s.Refresh(); err != nil {
		s.cancel()
		return nil, err
	}
	return s, nil
}

// Refresh reads the directory of a read-only Store again, so that it sees
// what the writer committed, released and moved since. A store opened with
// Open is always current; for it Refresh returns an error.
func (s *Store) Refresh() error {
	if !s.readOnly {
		return errors.New("cdb: Refresh is for stores opened read-only")
	}
	s.mu.Lock()
	gen := s.ro.gen
	s.mu.Unlock()
	return s.refreshSince(gen)
}

// refreshSince reads the directory again unless another reading finished
// after generation gen was seen.
func (s *Store) refreshSince(gen uint64) error {
	s.ro.refreshMu.Lock()
	defer s.ro.refreshMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	current := s.ro.gen
	s.mu.Unlock()
	if current != gen {
		return nil
	}
	v, err := readView(s.dir, s.log)
	if err != nil {
		return fmt.Errorf("cdb: read %s: %w", s.dir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.segments {
		// Replaced: its descriptor goes once no reader holds it.
		g.doomed = true
		if g.readers == 0 {
			s.unlinkLocked(g)
		}
	}
	s.segments, s.relocated = v.segments, v.relocated
	s.ro.maxSeen, s.ro.incomplete = v.maxSeen, v.incomplete
	s.ro.gen++
	return nil
}

// mayBeUnseen reports whether a lookup of k that found nothing (g nil) or
// found no record at loc of g could be explained by a view older than the
// store, so that reading the directory again may find it.
func (s *Store) mayBeUnseen(k key, g *segment, loc location) bool {
	if g == nil {
		return k.seg > s.ro.maxSeen || s.ro.incomplete[k.seg]
	}
	return !g.sealed && loc.off >= fileHeaderSize+g.dataBytes
}

func (s *Store) closeReadOnly() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.closeFiles()
	return nil
}

// view is what readView found in a store directory.
type view struct {
	segments   map[uint64]*segment
	relocated  map[key]location
	maxSeen    uint64
	incomplete map[uint64]bool
}

// readView reads the state of the store in dir without changing anything
// in it, whatever the writer is doing.
func readView(dir string, logger *slog.Logger) (*view, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	v := &view{segments: make(map[uint64]*segment), relocated: make(map[key]location), incomplete: make(map[uint64]bool)}
	var segIDs, relIDs []uint64
	for _, e := range entries {
		if id, ok := parseFileName(e.Name(), segmentExt); ok {
			segIDs = append(segIDs, id)
			v.maxSeen = max(v.maxSeen, id)
		} else if id, ok := parseFileName(e.Name(), releaseExt); ok {
			relIDs = append(relIDs, id)
		}
	}
	slices.Sort(segIDs)
	compacted := make(map[uint64][]footerEntry)
	for _, id := range segIDs {
		path := filepath.Join(dir, segmentName(id))
		g, footer, err := viewSegment(path, id)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // deleted since the directory was listed
		case err != nil:
			return nil, fmt.Errorf("segment %016x: %w", id, err)
		case g == nil:
			v.incomplete[id] = true
			continue
		}
		v.segments[id] = g
		if g.kind == kindCompacted {
			compacted[id] = footer
		}
	}
	for _, id := range relIDs {
		g := v.segments[id]
		if g == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, releaseName(id)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("release marks of segment %016x: %w", id, err)
		}
		applyReleaseMarks(g, b)
	}
	if err := resolveCopies(v.segments, v.relocated, segIDs, compacted, nil); err != nil {
		return nil, err
	}
	logger.Debug("read the store", "dir", dir, "segments", len(v.segments), "incomplete", len(v.incomplete))
	return v, nil
}

// viewSegment reads the state of segment id from path, without changing
// the file: through the footer of a sealed segment, else by checking its
// records from the start up to the first that is not complete. It returns
// a nil segment for a file without a complete record or with a header
// that is not intact (yet).
func viewSegment(path string, id uint64) (*segment, []footerEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := fi.Size()
	if size < fileHeaderSize {
		return nil, nil, nil
	}
	hb := make([]byte, fileHeaderSize)
	if _, err := f.ReadAt(hb, 0); err != nil {
		return nil, nil, err
	}
	h, err := decodeFileHeader(hb)
	if err != nil || h.id != id {
		return nil, nil, nil
	}
	g := &segment{id: id, kind: h.kind}
	if footer, t, err := readFooter(f, size); err == nil {
		g.sealed = true
		g.sealedAt, g.fileSize, g.count, g.dataBytes = t.sealed, size, t.count, t.dataBytes
		g.single = g.count == 1
		return g, footer, nil
	}
	footer, end := scanRecords(f, h, size)
	if len(footer) == 0 {
		return nil, nil, nil
	}
	g.index = footer
	g.fileSize, g.count, g.dataBytes = end, int64(len(footer)), end-fileHeaderSize
	return g, footer, nil
}

// applyReleaseMarks applies the release marks in b to g, up to the first
// that is not intact (one being appended, or torn by a crash), and returns
// the bytes of the marks applied.
func applyReleaseMarks(g *segment, b []byte) int {
	n := 0
	for ; n+relEntrySize <= len(b); n += relEntrySize {
		e, ok := decodeRelEntry(b[n:])
		if !ok {
			break
		}
		if e.off+e.length <= fileHeaderSize+g.dataBytes {
			g.markReleased(e.off, e.length)
			if e.superseded {
				if g.superseded == nil {
					g.superseded = make(map[int64]bool)
				}
				g.superseded[e.off] = true
			}
		}
	}
	return n
}
