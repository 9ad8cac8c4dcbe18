package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/zstd"
)

// segmentMeta is what the live log records about an archive segment, under
// the key "mseg" + num: the segment exists exactly when this record does.
// Archive writes the record in the same batch that removes the segment's
// events from the live log, so the events are always in one place or the
// other (or, between the segment's sync and that batch, in both; readers
// skip the duplicate).
type segmentMeta struct {
	num         uint64
	first, last uint64 // lowest and highest sequence number in the segment
	count       uint64 // number of events
	size        uint64 // file size
}

const segmentMetaFormat = 1

func (m segmentMeta) encode() []byte {
	b := make([]byte, 0, 33)
	b = append(b, segmentMetaFormat)
	b = binary.BigEndian.AppendUint64(b, m.first)
	b = binary.BigEndian.AppendUint64(b, m.last)
	b = binary.BigEndian.AppendUint64(b, m.count)
	return binary.BigEndian.AppendUint64(b, m.size)
}

func decodeSegmentMeta(key, v []byte) (segmentMeta, error) {
	if len(key) != len(metaSegPrefix)+8 || len(v) != 33 || v[0] != segmentMetaFormat {
		return segmentMeta{}, fmt.Errorf("log: malformed archive segment record %x=%x", key, v)
	}
	return segmentMeta{
		num:   binary.BigEndian.Uint64(key[len(metaSegPrefix):]),
		first: binary.BigEndian.Uint64(v[1:]),
		last:  binary.BigEndian.Uint64(v[9:]),
		count: binary.BigEndian.Uint64(v[17:]),
		size:  binary.BigEndian.Uint64(v[25:]),
	}, nil
}

// archive is the set of archive segments of a Log.
type archive struct {
	dir    string
	dec    *zstd.Decoder
	logger *slog.Logger

	mu   sync.RWMutex
	segs []segmentMeta // by number, which is creation order
	// foreignMax is the highest number of a segment file in the directory
	// that this log did not write (see loadArchive); new segments are
	// numbered above it so that none is ever overwritten.
	foreignMax uint64
}

// loadArchive reads the segment records of the store. A writer also
// removes the segment file an Archive pass wrote but did not get to
// commit: it has no record, it is numbered above every other file, and its
// events are still in the live log, byte for byte. Any other segment file
// without a record belongs to another log
// that used the same directory (a log moved aside and replaced, as after
// smxctl reconstruct, or one whose archive_directory changed): it is left
// alone, with a warning, and new segments are numbered above it.
func loadArchive(db *pebble.DB, dir string, writer bool, logger *slog.Logger) (*archive, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxBlockSize), zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("log: zstd: %w", err)
	}
	a := &archive{dir: dir, dec: dec, logger: logger}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: metaSegPrefix, UpperBound: prefixEnd(metaSegPrefix)})
	if err != nil {
		return nil, fmt.Errorf("log: read archive records: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		m, err := decodeSegmentMeta(it.Key(), it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		a.segs = append(a.segs, m)
	}
	if err := firstErr(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("log: read archive records: %w", err)
	}
	if !writer {
		return a, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("log: archive dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("log: archive dir: %w", err)
	}
	known := make(map[uint64]bool, len(a.segs))
	var recordedMax uint64
	for _, m := range a.segs {
		known[m.num] = true
		recordedMax = max(recordedMax, m.num)
	}
	var unfinished []string
	var unrecorded []uint64
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".seg.tmp") {
			unfinished = append(unfinished, name)
		} else if num, isSeg := parseSegmentName(name); isSeg && !known[num] {
			unrecorded = append(unrecorded, num)
		}
	}
	// A pass numbers its segment above every file in the directory, so
	// only the highest unrecorded one can be this log's own.
	if len(unrecorded) > 0 {
		top := slices.Max(unrecorded)
		if top > recordedMax && a.ownUnrecorded(db, top) {
			unfinished = append(unfinished, segmentName(top))
			unrecorded = slices.DeleteFunc(unrecorded, func(n uint64) bool { return n == top })
		}
	}
	if len(unrecorded) > 0 {
		a.foreignMax = slices.Max(unrecorded)
		logger.Warn("archive directory holds segments this log did not write; left alone",
			"dir", dir, "segments", len(unrecorded), "first", segmentName(slices.Min(unrecorded)),
			"last", segmentName(a.foreignMax))
	}
	for _, name := range unfinished {
		logger.Warn("removing unfinished archive segment", "file", name)
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("log: remove unfinished archive segment: %w", err)
		}
	}
	return a, nil
}

// ownUnrecorded reports whether segment num, which has no record, was
// written by an Archive pass of this log that did not get to commit: its
// first event is still in the live log with the same bytes (the record's
// checksum covers its sequence number, so another log's event does not
// match by accident). A file that cannot be read as a segment is not this
// log's: Archive renames a segment into place only once it is complete
// and synced.
func (a *archive) ownUnrecorded(db *pebble.DB, num uint64) bool {
	r, err := openSegment(a.dir, segmentMeta{num: num}, a.dec)
	if err != nil {
		return false
	}
	defer r.Close()
	c := segmentCursor{r: r}
	c.seek(0)
	if !c.valid {
		return false
	}
	k := makeEventKey(c.seq)
	v, closer, err := db.Get(k[:])
	if err != nil {
		return false
	}
	defer closer.Close()
	return bytes.Equal(v, c.rec)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *archive) len() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.segs)
}

// lastSeq returns the highest sequence number in the archive.
func (a *archive) lastSeq() uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var last uint64
	for _, m := range a.segs {
		last = max(last, m.last)
	}
	return last
}

func (a *archive) nextNum() uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	next := a.foreignMax + 1
	if len(a.segs) > 0 {
		next = max(next, a.segs[len(a.segs)-1].num+1)
	}
	return next
}

func (a *archive) add(m segmentMeta) {
	a.mu.Lock()
	a.segs = append(a.segs, m)
	a.mu.Unlock()
}

func (a *archive) remove(num uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, m := range a.segs {
		if m.num == num {
			a.segs = append(a.segs[:i], a.segs[i+1:]...)
			return
		}
	}
}

// from returns the segments that may hold sequence numbers >= from,
// ordered by their first sequence number.
func (a *archive) from(from uint64) []segmentMeta {
	a.mu.RLock()
	var out []segmentMeta
	for _, m := range a.segs {
		if m.last >= from {
			out = append(out, m)
		}
	}
	a.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].first < out[j].first })
	return out
}

// get returns event seq from the archive.
func (a *archive) get(seq uint64) (Event, error) {
	a.mu.RLock()
	var cands []segmentMeta
	for _, m := range a.segs {
		if m.first <= seq && seq <= m.last {
			cands = append(cands, m)
		}
	}
	a.mu.RUnlock()
	for _, m := range cands {
		r, err := openSegment(a.dir, m, a.dec)
		if err != nil {
			return Event{}, &RecordError{Seq: seq, Where: "archive segment " + segmentName(m.num), Err: err}
		}
		c := segmentCursor{r: r}
		c.seek(seq)
		if c.err != nil {
			r.Close()
			return Event{}, c.err
		}
		if c.valid && c.seq == seq {
			var e Event
			err := c.decode(&e, true)
			r.Close()
			return e, err
		}
		r.Close()
	}
	return Event{}, &RecordError{Seq: seq, Where: "live log and archive", Err: ErrMissing}
}

// FinishedFunc tells Archive whether the message with transaction id txn
// (ss_ta) is completely finished – every recipient delivered, failed,
// expired or deleted, and its content released – and when it became so. The
// log does not interpret events; the projections know the queues and
// answer. Archive calls it from the goroutine that called Archive, once per
// transaction per pass.
type FinishedFunc func(txn string) (finishedAt time.Time, finished bool)

// ArchiveStats reports what an Archive pass did.
type ArchiveStats struct {
	Scanned  int      // live events looked at
	Archived int      // events moved into segments
	Segments []string // file names of the segments written
}

// Archive moves the events of finished messages out of the live log into
// archive segments. It looks at the live events from the oldest on and
// stops at the first one newer than Options.ArchiveAfter; of those it
// moves every event whose message finished (per finished) at least
// ArchiveAfter ago. Events of messages still in the queue stay in the
// live log, however old, so the live log keeps holes where events were
// archived; Iter and Get read archive and live log as one sequence. Each
// segment is synced before its events are removed from the live log, in
// one atomic batch with the segment's record, so a crash at any point
// leaves every event in the live log or the archive.
//
// The daemon calls Archive periodically; one pass runs at a time.
func (l *Log) Archive(ctx context.Context, finished FinishedFunc) (ArchiveStats, error) {
	var stats ArchiveStats
	if l.readOnly {
		return stats, ErrReadOnly
	}
	l.archiveMu.Lock()
	defer l.archiveMu.Unlock()
	if l.isClosed.Load() {
		return stats, ErrClosed
	}
	cutoff := l.opts.Clock().Add(-l.opts.ArchiveAfter)
	end := l.durable.Load()
	endKey := makeEventKey(end + 1)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: endKey[:]})
	if err != nil {
		return stats, fmt.Errorf("log: archive: %w", err)
	}
	defer it.Close()

	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	if err != nil {
		return stats, fmt.Errorf("log: archive: zstd: %w", err)
	}
	defer enc.Close()

	p := archivePass{l: l, enc: enc, stats: &stats}
	decided := make(map[string]bool)
	for ok := it.First(); ok; ok = it.Next() {
		if stats.Scanned%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return stats, p.abort(err)
			}
			if l.isClosed.Load() {
				return stats, p.abort(ErrClosed)
			}
		}
		stats.Scanned++
		seq, okKey := eventKeySeq(it.Key())
		if !okKey {
			return stats, p.abort(fmt.Errorf("log: archive: malformed key %x", it.Key()))
		}
		rec, err := it.ValueAndErr()
		if err != nil {
			return stats, p.abort(&RecordError{Seq: seq, Where: "live log", Err: err})
		}
		body, err := checkRecord(rec, seq)
		if err != nil {
			return stats, p.abort(&RecordError{Seq: seq, Where: "live log", Err: err})
		}
		txn, t, err := recordHeader(body)
		if err != nil {
			return stats, p.abort(&RecordError{Seq: seq, Where: "live log", Err: err})
		}
		if t.After(cutoff) {
			break
		}
		move, seen := decided[txn]
		if !seen {
			at, done := finished(txn)
			move = done && !at.After(cutoff)
			decided[txn] = move
		}
		if !move {
			p.breakRun()
			continue
		}
		if err := p.add(seq, rec); err != nil {
			return stats, p.abort(err)
		}
	}
	if err := it.Error(); err != nil {
		return stats, p.abort(fmt.Errorf("log: archive: read live log: %w", err))
	}
	if err := p.seal(); err != nil {
		return stats, err
	}
	if stats.Archived > 0 {
		l.opts.Logger.Info("archived events", "scanned", stats.Scanned, "archived", stats.Archived,
			"segments", strings.Join(stats.Segments, ","))
	}
	return stats, nil
}

// archivePass is the state of one Archive call.
type archivePass struct {
	l     *Log
	enc   *zstd.Encoder
	stats *ArchiveStats
	w     *segmentWriter
	// runs are the live key ranges of the events in w: runs of events
	// that are adjacent in the live log, each removed with one range
	// deletion.
	runs   [][2]uint64
	inRun  bool
	events int
}

func (p *archivePass) breakRun() { p.inRun = false }

func (p *archivePass) add(seq uint64, rec []byte) error {
	if p.w == nil {
		w, err := createSegment(p.l.archive.dir, p.l.archive.nextNum(), p.enc)
		if err != nil {
			return err
		}
		p.w = w
	}
	if err := p.w.add(seq, rec); err != nil {
		return err
	}
	if p.inRun {
		p.runs[len(p.runs)-1][1] = seq
	} else {
		p.runs = append(p.runs, [2]uint64{seq, seq})
		p.inRun = true
	}
	p.events++
	if p.w.size >= p.l.opts.SegmentSize {
		return p.seal()
	}
	return nil
}

// seal finishes the current segment, records it and removes its events
// from the live log.
func (p *archivePass) seal() error {
	if p.w == nil {
		return nil
	}
	w := p.w
	p.w = nil
	meta, err := w.finish()
	if err != nil {
		return err
	}
	name := segmentName(meta.num)
	batch := p.l.db.NewBatch()
	defer batch.Close()
	if err := batch.Set(segmentMetaKey(meta.num), meta.encode(), nil); err != nil {
		return fmt.Errorf("log: archive: record segment %s: %w", name, err)
	}
	for _, r := range p.runs {
		lo, hi := makeEventKey(r[0]), makeEventKey(r[1]+1)
		var err error
		if r[0] == r[1] {
			err = batch.Delete(lo[:], nil)
		} else {
			err = batch.DeleteRange(lo[:], hi[:], nil)
		}
		if err != nil {
			return fmt.Errorf("log: archive: remove events %d-%d of segment %s: %w", r[0], r[1], name, err)
		}
	}
	// Readers that start from now on find the events in the segment; the
	// live copies are removed next, and until then readers skip the
	// duplicates.
	p.l.archive.add(meta)
	if err := p.l.db.Apply(batch, pebble.Sync); err != nil {
		// The segment file stays; without its record the next Open
		// removes it, and the events are still in the live log.
		p.l.archive.remove(meta.num)
		return fmt.Errorf("log: archive: commit segment %s: %w", name, err)
	}
	p.stats.Archived += p.events
	p.stats.Segments = append(p.stats.Segments, name)
	p.runs, p.inRun, p.events = p.runs[:0], false, 0
	return nil
}

// abort drops the unfinished segment and returns err.
func (p *archivePass) abort(err error) error {
	if p.w != nil {
		p.w.abort()
		p.w = nil
	}
	var re *RecordError
	if errors.As(err, &re) {
		p.l.opts.Logger.Error("archive pass stopped at a damaged record", "seq", re.Seq, "err", err)
	}
	return err
}
