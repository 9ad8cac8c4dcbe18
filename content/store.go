package content

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Store is the content database: message bodies in segment files under one
// directory. All methods are safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	log  *slog.Logger
	lock *os.File

	// readOnly is set by OpenReadOnly: see readonly.go.
	readOnly bool
	ro       roView

	mu        sync.Mutex
	closed    bool
	err       error // sticky: after a failed data sync nothing is acknowledged
	segments  map[uint64]*segment
	relocated map[key]location // bodies compaction moved: key to where they are now
	nextID    uint64
	openedAt  int64 // Unix nanoseconds; ReleaseOrphans leaves later bodies alone

	// The segment that receives bodies of up to InlineLimit bytes.
	active     *segment // nil until the first commit after Open or a roll
	activeFile *os.File // its write descriptor
	activeSize int64    // bytes written to it

	// Group commit. Every inline record gets a sequence number when it is
	// written; the sync loop makes them durable in batches.
	written   uint64            // last sequence number written
	durable   uint64            // sequence numbers up to this are synced
	roundDone chan struct{}     // closed when the current sync round ends
	dirtyRel  map[*os.File]bool // release files with marks not yet synced
	dirDirty  bool              // directory entries removed since the last sync
	retired   []*os.File        // descriptors to close after the current round
	kick      chan struct{}     // wakes the sync loop
	quit      chan struct{}     // closed by Close
	ctx       context.Context   // cancelled by Close: stops a background compaction
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the sync loop and the compactor
	compactMu sync.Mutex     // one compaction at a time
	bufs      sync.Pool      // *[]byte record buffers of inline writers
	disk      diskState      // Accepting's hysteresis
	counters  struct{ commits, syncs, releases, compactions, copied atomic.Uint64 }
}

// Open opens the content store in dir, creating dir if needed, and
// recovers it after a crash: segments that were being written when the
// process died are cut after their last complete record and sealed.
// Only one process may have a store open; the lock is dir/LOCK.
func Open(dir string, opts Options) (*Store, error) {
	if opts.OkDiskSpace != 0 && opts.MinDiskSpace != 0 && opts.OkDiskSpace <= opts.MinDiskSpace {
		return nil, fmt.Errorf("cdb: ok_disk_space (%d bytes) must be larger than min_disk_space (%d bytes)",
			opts.OkDiskSpace, opts.MinDiskSpace)
	}
	opts = opts.withDefaults()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cdb: open %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cdb: open %s: %w", dir, err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("cdb: open %s: %w", dir, err)
	}
	s := newStore(dir, opts, false)
	s.lock = lock
	if err := s.load(); err != nil {
		s.cancel()
		s.closeFiles()
		lock.Close()
		return nil, fmt.Errorf("cdb: open %s: %w", dir, err)
	}
	s.wg.Add(1)
	go s.syncLoop()
	if opts.CompactInterval > 0 {
		s.wg.Add(1)
		go s.compactLoop()
	}
	return s, nil
}

// newStore returns a Store on dir, an absolute path, with nothing read
// yet: Open loads and recovers it, OpenReadOnly reads a view of it.
func newStore(dir string, opts Options, readOnly bool) *Store {
	logger := opts.Logger.With("component", "cdb")
	if readOnly {
		logger = logger.With("mode", "read-only")
	}
	s := &Store{
		dir:       dir,
		opts:      opts,
		log:       logger,
		readOnly:  readOnly,
		segments:  make(map[uint64]*segment),
		relocated: make(map[key]location),
		roundDone: make(chan struct{}),
		dirtyRel:  make(map[*os.File]bool),
		kick:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
	}
	s.disk.accepting = true
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Dir returns the directory of the store.
func (s *Store) Dir() string { return s.dir }

// Close makes everything written durable, seals the segment that was
// receiving bodies, and releases the directory. Writers that commit after
// Close get ErrClosed.
func (s *Store) Close() error {
	if s.readOnly {
		return s.closeReadOnly()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	s.cancel()
	s.wg.Wait() // the sync loop runs a last round before it returns

	s.mu.Lock()
	err := s.err
	// After a failed sync the segment is left unsealed: Open then checks
	// every record in it instead of trusting a footer.
	if s.active != nil && s.err == nil {
		err = s.sealActiveLocked()
	}
	close(s.roundDone) // nobody waits forever on a round that never comes
	s.roundDone = make(chan struct{})
	for f := range s.dirtyRel {
		if serr := datasync(f); serr != nil && err == nil {
			err = serr
		}
	}
	clear(s.dirtyRel)
	s.mu.Unlock()
	s.closeFiles()
	if derr := syncDir(s.dir); err == nil {
		err = derr
	}
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("cdb: close %s: %w", s.dir, err)
	}
	return nil
}

// closeFiles closes every descriptor the store holds.
func (s *Store) closeFiles() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.segments {
		if g.file != nil {
			g.file.Close()
			g.file = nil
		}
		if g.relFile != nil {
			g.relFile.Close()
			g.relFile = nil
		}
	}
	if s.activeFile != nil {
		s.activeFile.Close()
		s.activeFile = nil
	}
	for _, f := range s.retired {
		f.Close()
	}
	s.retired = nil
}

// load reads the directory into memory and repairs what a crash left.
func (s *Store) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	var segIDs, relIDs []uint64
	var maxID uint64
	for _, e := range entries {
		if id, ok := parseFileName(e.Name(), segmentExt); ok {
			segIDs = append(segIDs, id)
			maxID = max(maxID, id)
		} else if id, ok := parseFileName(e.Name(), releaseExt); ok {
			relIDs = append(relIDs, id)
			maxID = max(maxID, id)
		}
	}
	slices.Sort(segIDs)
	compacted := make(map[uint64][]footerEntry)
	for _, id := range segIDs {
		g, footer, err := s.loadSegment(id)
		if err != nil {
			return err
		}
		if g == nil {
			continue
		}
		s.segments[id] = g
		if g.kind == kindCompacted {
			compacted[id] = footer
		}
	}
	for _, id := range relIDs {
		g := s.segments[id]
		if g == nil {
			// The segment was deleted and the process died before its
			// release file followed.
			if err := os.Remove(s.releasePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		}
		if err := s.loadReleases(g); err != nil {
			return err
		}
	}
	if err := resolveCopies(s.segments, s.relocated, segIDs, compacted, s.appendReleaseLocked); err != nil {
		return err
	}
	for _, id := range segIDs {
		if g := s.segments[id]; g != nil && g.live() <= 0 {
			s.deleteSegmentLocked(g)
		}
	}
	now := s.opts.Now()
	s.nextID = max(maxID+1, uint64(now.UnixMicro()))
	s.openedAt = now.UnixNano()
	for f := range s.dirtyRel {
		if err := datasync(f); err != nil {
			return err
		}
	}
	clear(s.dirtyRel)
	for _, f := range s.retired {
		f.Close()
	}
	s.retired = nil
	return syncDir(s.dir)
}

// loadSegment reads the state of segment id. A segment that was being
// written when the process died is recovered and sealed. It returns a nil
// segment for a file that held no record (removed) or whose header is
// damaged (renamed to NAME.damaged for the postmaster to inspect).
func (s *Store) loadSegment(id uint64) (*segment, []footerEntry, error) {
	path := s.segmentPath(id)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
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
		// Created, and the process died before the header was written.
		s.log.Info("removing empty segment", "file", path, "size", size)
		return nil, nil, os.Remove(path)
	}
	hb := make([]byte, fileHeaderSize)
	if _, err := f.ReadAt(hb, 0); err != nil {
		return nil, nil, err
	}
	h, err := decodeFileHeader(hb)
	if err == nil && h.id != id {
		err = fmt.Errorf("header names segment %016x", h.id)
	}
	if err != nil {
		s.log.Error("segment header damaged; moved aside", "file", path, "err", err)
		return nil, nil, os.Rename(path, path+".damaged")
	}
	g := &segment{id: id, kind: h.kind, sealed: true}
	footer, t, err := readFooter(f, size)
	if err == nil {
		g.sealedAt, g.fileSize, g.count, g.dataBytes = t.sealed, size, t.count, t.dataBytes
		g.single = g.count == 1
		return g, footer, nil
	}
	// Not sealed: the segment was receiving bodies (or a large body, or a
	// compaction) when the process stopped.
	footer, end := scanRecords(f, h, size)
	if len(footer) == 0 {
		s.log.Info("removing segment without a complete record", "file", path, "size", size)
		return nil, nil, os.Remove(path)
	}
	now := s.opts.Now().UnixNano()
	if g.fileSize, err = writeSeal(f, end, footer, now); err != nil {
		return nil, nil, err
	}
	if err := datasync(f); err != nil {
		return nil, nil, err
	}
	s.counters.syncs.Add(1)
	g.sealedAt, g.count, g.dataBytes = now, int64(len(footer)), end-fileHeaderSize
	g.single = g.count == 1
	s.log.Info("recovered segment", "file", path, "records", g.count, "cut_bytes", size-end)
	return g, footer, nil
}

// loadReleases reads the release marks of g. A torn mark at the end (the
// process died while appending it) is cut off.
func (s *Store) loadReleases(g *segment) error {
	path := s.releasePath(g.id)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := applyReleaseMarks(g, b)
	if n < len(b) {
		s.log.Info("cutting torn release marks", "file", path, "valid_bytes", n, "size", len(b))
		if err := os.Truncate(path, int64(n)); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	g.relFile = f
	g.relSize = int64(n)
	return nil
}

// resolveCopies decides, after a crash, which copy of each body is the
// live one. Compaction writes a body's copy into a newer segment before it
// deletes the old one, so a crash in between leaves two copies: the newest
// wins and the others are marked superseded on disk (so that deleting the
// newest later can never resurrect an old copy). If any copy was released
// (a Release that hit the old copy while compaction was copying it), the
// body is released. Superseded marks are kept apart from release marks:
// a superseded old copy says nothing about the body.
//
// It works on segments and relocated, the store's or a read-only view's
// (OpenReadOnly); mark writes a mark to disk, and is nil for a view, which
// writes nothing and keeps the marks in memory only.
func resolveCopies(segments map[uint64]*segment, relocated map[key]location, segIDs []uint64,
	compacted map[uint64][]footerEntry, mark func(*segment, relEntry) error) error {
	type copyOf struct {
		g      *segment
		off    int64
		length int64
	}
	copies := make(map[key][]copyOf)
	for _, id := range segIDs { // ascending: older copies first
		g := segments[id]
		if g == nil || g.kind != kindCompacted {
			continue
		}
		for _, e := range compacted[id] {
			if len(copies[e.key]) == 0 {
				if orig := segments[e.key.seg]; orig != nil && orig.kind == kindReceived && e.key.seg < id {
					copies[e.key] = append(copies[e.key], copyOf{orig, e.key.off, e.length})
				}
			}
			copies[e.key] = append(copies[e.key], copyOf{g, e.off, e.length})
		}
	}
	for k, list := range copies {
		released := false
		for _, c := range list {
			if _, ok := c.g.released[c.off]; ok && !c.g.superseded[c.off] {
				released = true
			}
		}
		newest := list[len(list)-1]
		for i, c := range list {
			if i == len(list)-1 && !released {
				break
			}
			if _, ok := c.g.released[c.off]; ok {
				continue
			}
			e := relEntry{off: c.off, length: c.length, superseded: i < len(list)-1 && !released}
			if mark != nil {
				if err := mark(c.g, e); err != nil {
					return err
				}
			}
			c.g.markReleased(c.off, c.length)
		}
		if !released && newest.g.kind == kindCompacted {
			relocated[k] = location{seg: newest.g.id, off: newest.off}
		}
	}
	return nil
}

// allocIDLocked returns a new segment id. Ids grow for ever: they start
// above both every id on disk and the clock in microseconds, so a
// reference to a deleted segment never names a new one.
func (s *Store) allocIDLocked() uint64 {
	id := s.nextID
	s.nextID++
	return id
}

// resolveLocked returns where the body with key k is now, and its segment;
// the segment is nil if the body is gone.
func (s *Store) resolveLocked(k key) (location, *segment) {
	if loc, ok := s.relocated[k]; ok {
		return loc, s.segments[loc.seg]
	}
	g := s.segments[k.seg]
	if g == nil || g.kind != kindReceived {
		return location{}, nil
	}
	return location{seg: k.seg, off: k.off}, g
}

// acquireLocked pins g against deletion and returns a descriptor to read
// it with; releaseSegmentLocked undoes it.
func (s *Store) acquireLocked(g *segment) (*os.File, error) {
	if g.single {
		f, err := os.Open(s.segmentPath(g.id))
		if err != nil {
			return nil, err
		}
		g.readers++
		return f, nil
	}
	if g.file == nil {
		f, err := os.Open(s.segmentPath(g.id))
		if err != nil {
			return nil, err
		}
		g.file = f
	}
	g.readers++
	return g.file, nil
}

func (s *Store) releaseSegmentLocked(g *segment, f *os.File) {
	if g.single {
		f.Close()
	}
	g.readers--
	if g.doomed && g.readers == 0 {
		s.unlinkLocked(g)
	}
}

func (s *Store) releaseSegment(g *segment, f *os.File) {
	s.mu.Lock()
	s.releaseSegmentLocked(g, f)
	s.mu.Unlock()
}

// deleteSegmentLocked removes g from the store; its files go once no
// reader holds it.
func (s *Store) deleteSegmentLocked(g *segment) {
	if g.doomed {
		return
	}
	delete(s.segments, g.id)
	g.doomed = true
	if g.readers == 0 {
		s.unlinkLocked(g)
	}
}

// unlinkLocked removes the files of a deleted segment: first the segment,
// then its release marks, so that a crash in between leaves only a
// release file without a segment, which Open removes.
func (s *Store) unlinkLocked(g *segment) {
	if s.readOnly {
		// A read-only view only lets go of the segment it replaced.
		if g.file != nil {
			g.file.Close()
			g.file = nil
		}
		return
	}
	if err := os.Remove(s.segmentPath(g.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("removing released segment", "segment", fmt.Sprintf("%016x", g.id), "err", err)
		return
	}
	if g.relFile != nil {
		s.retired = append(s.retired, g.relFile)
		g.relFile = nil
	}
	if err := os.Remove(s.releasePath(g.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("removing release marks", "segment", fmt.Sprintf("%016x", g.id), "err", err)
	}
	if g.file != nil {
		s.retired = append(s.retired, g.file)
		g.file = nil
	}
	s.dirDirty = true
	s.kickSync()
}

// appendReleaseLocked appends a release mark to g's release file. Marks
// are synced by the next sync round, not before Release returns: a mark
// lost in a crash only delays reclaiming the space until the release is
// repeated (see docs/content.md).
func (s *Store) appendReleaseLocked(g *segment, e relEntry) error {
	if g.relFile == nil {
		f, err := os.OpenFile(s.releasePath(g.id), os.O_WRONLY|os.O_CREATE, 0o640)
		if err != nil {
			return err
		}
		g.relFile, g.relSize = f, 0
		s.dirDirty = true
	}
	var b [relEntrySize]byte
	e.put(b[:])
	// WriteAt at the known end, so that a failed write is overwritten by
	// the next mark instead of leaving a torn mark in the middle.
	if _, err := g.relFile.WriteAt(b[:], g.relSize); err != nil {
		return err
	}
	g.relSize += relEntrySize
	s.dirtyRel[g.relFile] = true
	return nil
}

func (s *Store) kickSync() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// syncLoop runs sync rounds until Close: each round syncs the segment that
// receives bodies up to the last record written when the round started,
// and answers at once every writer waiting for a record at or below that
// point (that is the group commit); then it syncs every release file with
// new marks, and the directory if files were removed.
func (s *Store) syncLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.kick:
			s.syncRound()
		case <-s.quit:
			s.syncRound()
			return
		}
	}
}

func (s *Store) syncRound() {
	s.mu.Lock()
	target := s.written
	var data *os.File
	if target > s.durable && s.err == nil {
		data = s.activeFile
	}
	rels := make([]*os.File, 0, len(s.dirtyRel))
	for f := range s.dirtyRel {
		rels = append(rels, f)
	}
	clear(s.dirtyRel)
	dir := s.dirDirty
	s.dirDirty = false
	s.mu.Unlock()

	if data != nil {
		dataErr := datasync(data)
		s.counters.syncs.Add(1)
		// The writers waiting for these records are answered now, not
		// after the release marks and the directory below: nobody waits
		// for those, and syncing them first made every commit wait for
		// two or three syncs instead of one (in the relay benchmark the
		// mean commit went from 5.7-9.2 ms to 4.5-5.0 ms under load;
		// docs/performance.md).
		s.mu.Lock()
		if dataErr != nil {
			s.failLocked(dataErr)
		} else if target > s.durable {
			s.durable = target
		}
		close(s.roundDone)
		s.roundDone = make(chan struct{})
		s.mu.Unlock()
	}
	for _, f := range rels {
		if err := datasync(f); err != nil {
			s.log.Error("syncing release marks", "err", err)
		}
		s.counters.syncs.Add(1)
	}
	if dir {
		if err := syncDir(s.dir); err != nil {
			s.log.Error("syncing directory", "dir", s.dir, "err", err)
		}
		s.counters.syncs.Add(1)
	}

	s.mu.Lock()
	if data == nil {
		close(s.roundDone)
		s.roundDone = make(chan struct{})
	}
	retired := s.retired
	s.retired = nil
	for _, f := range retired {
		delete(s.dirtyRel, f)
	}
	s.mu.Unlock()
	for _, f := range retired {
		f.Close()
	}
}

// failLocked records a failed data sync. After fsync fails the kernel may
// have dropped the dirty pages, so nothing written since the last good sync
// can be trusted: the store stops acknowledging, and the daemon must
// restart it (recovery then cuts what is not intact).
func (s *Store) failLocked(err error) {
	if s.err == nil {
		s.err = fmt.Errorf("cdb: sync failed, store unusable until reopened: %w", err)
		s.log.Error("sync failed; refusing further commits", "err", err)
	}
}

// waitDurable returns once the inline record with sequence number seq is on
// stable storage.
func (s *Store) waitDurable(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		if s.durable >= seq {
			s.mu.Unlock()
			return nil
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		if s.closed && s.activeFile == nil {
			s.mu.Unlock()
			return ErrClosed
		}
		done := s.roundDone
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats describes the store.
type Stats struct {
	Bodies      int64  // live bodies
	LiveBytes   int64  // bytes of their records (header, body, envelope)
	Bytes       int64  // bytes of segment files, live or not
	Segments    int    // segment files
	Relocated   int    // live bodies that compaction moved
	Commits     uint64 // bodies committed since Open
	Syncs       uint64 // fdatasync and fsync calls since Open
	Releases    uint64 // bodies released since Open
	Compactions uint64 // segments compacted since Open
	CopiedBytes uint64 // bytes compaction copied since Open
}

// Stats returns the current figures.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Segments:    len(s.segments),
		Relocated:   len(s.relocated),
		Commits:     s.counters.commits.Load(),
		Syncs:       s.counters.syncs.Load(),
		Releases:    s.counters.releases.Load(),
		Compactions: s.counters.compactions.Load(),
		CopiedBytes: s.counters.copied.Load(),
	}
	for _, g := range s.segments {
		st.Bodies += g.live()
		st.LiveBytes += g.liveBytes()
		if g == s.active {
			st.Bytes += s.activeSize
		} else {
			st.Bytes += g.fileSize
		}
	}
	return st
}

// now returns the store's clock.
func (s *Store) now() time.Time { return s.opts.Now() }
