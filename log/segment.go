package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/klauspost/compress/zstd"
)

// An archive segment is a sealed file of records, compressed in blocks,
// written once by Archive and never changed. Its records are in ascending
// sequence order but need not be consecutive: events of messages that were
// not finished yet stay in the live log, and a later segment may hold
// numbers in the range of an earlier one. All integers are big-endian.
//
//	header (24 bytes)
//	  magic "SMXARCH1", format u16 = 1, codec u8 (1 = zstd), 0 u8,
//	  segment number u64, CRC-32C of the preceding 20 bytes u32
//	blocks, each
//	  stored length u32, raw length u32, CRC-32C of the stored bytes u32,
//	  stored bytes: the zstd frame of the raw block, which is a run of
//	  entries: seq u64, record length uvarint, record (record.go)
//	index, one entry per block
//	  first seq u64, last seq u64, offset of the block u64, count u32
//	footer (56 bytes)
//	  index offset u64, index length u32, CRC-32C of the index u32,
//	  block count u32, event count u64, first seq u64, last seq u64,
//	  CRC-32C of the preceding 44 bytes u32, magic "SMXAEND1"
//
// Each record keeps the checksum it had in the live log, so an archived
// event is checked end to end, from the moment it was appended.
const (
	segmentMagic      = "SMXARCH1"
	segmentEndMagic   = "SMXAEND1"
	segmentFormat     = 1
	segmentCodecZstd  = 1
	segmentHeaderSize = 24
	segmentFooterSize = 56
	segmentIndexEntry = 28
	blockHeaderSize   = 12
	// segmentBlockSize is the raw size at which a block is compressed and
	// written: large enough for zstd to find the repetition between
	// records, small enough that a read from the middle of a segment
	// decompresses little it does not need.
	segmentBlockSize = 256 << 10
	// maxBlockSize bounds the raw size of a block a reader accepts (a
	// block holds at least one record, which may be larger than
	// segmentBlockSize).
	maxBlockSize = 64 << 20
)

// segmentName returns the file name of segment num.
func segmentName(num uint64) string { return fmt.Sprintf("%010d.seg", num) }

// parseSegmentName returns the number of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	var num uint64
	if len(name) != 14 || filepath.Ext(name) != ".seg" {
		return 0, false
	}
	if _, err := fmt.Sscanf(name, "%010d.seg", &num); err != nil {
		return 0, false
	}
	return num, segmentName(num) == name
}

// blockIndex describes one block of a segment.
type blockIndex struct {
	first, last uint64
	offset      uint64
	count       uint32
}

// segmentWriter writes one segment to a temporary file; finish seals it
// under its final name.
type segmentWriter struct {
	dir   string
	num   uint64
	f     *os.File
	tmp   string
	enc   *zstd.Encoder
	off   uint64
	raw   []byte // the block being filled
	first uint64 // first seq of that block
	last  uint64
	count uint32
	index []blockIndex
	total uint64 // events in the segment
	size  int64  // raw bytes written, for SegmentSize
	buf   []byte
}

func createSegment(dir string, num uint64, enc *zstd.Encoder) (*segmentWriter, error) {
	tmp := filepath.Join(dir, segmentName(num)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("log: create archive segment: %w", err)
	}
	w := &segmentWriter{dir: dir, num: num, f: f, tmp: tmp, enc: enc}
	h := make([]byte, 0, segmentHeaderSize)
	h = append(h, segmentMagic...)
	h = binary.BigEndian.AppendUint16(h, segmentFormat)
	h = append(h, segmentCodecZstd, 0)
	h = binary.BigEndian.AppendUint64(h, num)
	h = binary.BigEndian.AppendUint32(h, crc32.Checksum(h, crcTable))
	if err := w.write(h); err != nil {
		w.abort()
		return nil, err
	}
	return w, nil
}

func (w *segmentWriter) write(b []byte) error {
	if _, err := w.f.Write(b); err != nil {
		return fmt.Errorf("log: write archive segment %s: %w", w.tmp, err)
	}
	w.off += uint64(len(b))
	return nil
}

// add appends the record of seq, which must be greater than the last one
// added.
func (w *segmentWriter) add(seq uint64, rec []byte) error {
	if w.count == 0 {
		w.first = seq
	}
	w.raw = binary.BigEndian.AppendUint64(w.raw, seq)
	w.raw = binary.AppendUvarint(w.raw, uint64(len(rec)))
	w.raw = append(w.raw, rec...)
	w.last = seq
	w.count++
	w.total++
	w.size += int64(len(rec)) + 10
	if len(w.raw) >= segmentBlockSize {
		return w.flushBlock()
	}
	return nil
}

func (w *segmentWriter) flushBlock() error {
	if w.count == 0 {
		return nil
	}
	w.buf = w.enc.EncodeAll(w.raw, w.buf[:0])
	var h [blockHeaderSize]byte
	binary.BigEndian.PutUint32(h[0:], uint32(len(w.buf)))
	binary.BigEndian.PutUint32(h[4:], uint32(len(w.raw)))
	binary.BigEndian.PutUint32(h[8:], crc32.Checksum(w.buf, crcTable))
	w.index = append(w.index, blockIndex{first: w.first, last: w.last, offset: w.off, count: w.count})
	if err := w.write(h[:]); err != nil {
		return err
	}
	if err := w.write(w.buf); err != nil {
		return err
	}
	w.raw, w.count = w.raw[:0], 0
	return nil
}

// finish writes the index and footer, syncs the file and gives it its
// final name, and syncs the directory, so that the segment is durable
// before the caller removes its events from the live log.
func (w *segmentWriter) finish() (segmentMeta, error) {
	if err := w.flushBlock(); err != nil {
		w.abort()
		return segmentMeta{}, err
	}
	idx := make([]byte, 0, len(w.index)*segmentIndexEntry)
	for _, b := range w.index {
		idx = binary.BigEndian.AppendUint64(idx, b.first)
		idx = binary.BigEndian.AppendUint64(idx, b.last)
		idx = binary.BigEndian.AppendUint64(idx, b.offset)
		idx = binary.BigEndian.AppendUint32(idx, b.count)
	}
	meta := segmentMeta{num: w.num, count: w.total}
	if len(w.index) > 0 {
		meta.first, meta.last = w.index[0].first, w.index[len(w.index)-1].last
	}
	foot := make([]byte, 0, segmentFooterSize)
	foot = binary.BigEndian.AppendUint64(foot, w.off)
	foot = binary.BigEndian.AppendUint32(foot, uint32(len(idx)))
	foot = binary.BigEndian.AppendUint32(foot, crc32.Checksum(idx, crcTable))
	foot = binary.BigEndian.AppendUint32(foot, uint32(len(w.index)))
	foot = binary.BigEndian.AppendUint64(foot, meta.count)
	foot = binary.BigEndian.AppendUint64(foot, meta.first)
	foot = binary.BigEndian.AppendUint64(foot, meta.last)
	foot = binary.BigEndian.AppendUint32(foot, crc32.Checksum(foot, crcTable))
	foot = append(foot, segmentEndMagic...)
	if err := w.write(idx); err != nil {
		w.abort()
		return segmentMeta{}, err
	}
	if err := w.write(foot); err != nil {
		w.abort()
		return segmentMeta{}, err
	}
	meta.size = w.off
	if err := w.f.Sync(); err != nil {
		w.abort()
		return segmentMeta{}, fmt.Errorf("log: sync archive segment %s: %w", w.tmp, err)
	}
	if err := w.f.Close(); err != nil {
		w.f = nil
		w.abort()
		return segmentMeta{}, fmt.Errorf("log: close archive segment %s: %w", w.tmp, err)
	}
	w.f = nil
	final := filepath.Join(w.dir, segmentName(w.num))
	if err := os.Rename(w.tmp, final); err != nil {
		w.abort()
		return segmentMeta{}, fmt.Errorf("log: seal archive segment: %w", err)
	}
	if err := os.Chmod(final, 0o440); err != nil {
		return segmentMeta{}, fmt.Errorf("log: seal archive segment: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		return segmentMeta{}, err
	}
	return meta, nil
}

// abort removes the unfinished segment.
func (w *segmentWriter) abort() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	os.Remove(w.tmp)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("log: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("log: sync %s: %w", dir, err)
	}
	return nil
}

// segmentReader reads a sealed segment.
type segmentReader struct {
	name  string
	f     io.ReaderAt
	size  int64
	close func() error
	dec   *zstd.Decoder
	meta  segmentMeta
	index []blockIndex
}

// errSegment is wrapped by errors about a damaged segment file.
var errSegment = errors.New("damaged archive segment")

func openSegment(dir string, meta segmentMeta, dec *zstd.Decoder) (*segmentReader, error) {
	name := filepath.Join(dir, segmentName(meta.num))
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("log: open archive segment: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("log: open archive segment: %w", err)
	}
	r, err := newSegmentReader(name, f, fi.Size(), meta, dec)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.close = f.Close
	return r, nil
}

// newSegmentReader reads the index of the segment in f, of size bytes. A
// meta with size 0 accepts whatever the footer says.
func newSegmentReader(name string, f io.ReaderAt, size int64, meta segmentMeta, dec *zstd.Decoder) (*segmentReader, error) {
	r := &segmentReader{name: name, f: f, size: size, dec: dec, meta: meta}
	if err := r.readIndex(); err != nil {
		return nil, fmt.Errorf("log: archive segment %s: %w", name, err)
	}
	return r, nil
}

func (r *segmentReader) Close() error {
	if r.close == nil {
		return nil
	}
	return r.close()
}

func (r *segmentReader) readIndex() error {
	size := r.size
	if size < segmentHeaderSize+segmentFooterSize {
		return fmt.Errorf("%w: file of %d bytes", errSegment, size)
	}
	if uint64(size) != r.meta.size && r.meta.size != 0 {
		return fmt.Errorf("%w: file of %d bytes, %d recorded", errSegment, size, r.meta.size)
	}
	head := make([]byte, segmentHeaderSize)
	if _, err := r.f.ReadAt(head, 0); err != nil {
		return err
	}
	if string(head[:8]) != segmentMagic || binary.BigEndian.Uint32(head[20:]) != crc32.Checksum(head[:20], crcTable) {
		return fmt.Errorf("%w: bad header", errSegment)
	}
	if v := binary.BigEndian.Uint16(head[8:]); v != segmentFormat || head[10] != segmentCodecZstd {
		return fmt.Errorf("%w: format %d codec %d not supported", errSegment, v, head[10])
	}
	if num := binary.BigEndian.Uint64(head[12:]); num != r.meta.num {
		return fmt.Errorf("%w: file holds segment %d", errSegment, num)
	}
	foot := make([]byte, segmentFooterSize)
	if _, err := r.f.ReadAt(foot, size-segmentFooterSize); err != nil {
		return err
	}
	if string(foot[48:]) != segmentEndMagic || binary.BigEndian.Uint32(foot[44:]) != crc32.Checksum(foot[:44], crcTable) {
		return fmt.Errorf("%w: bad footer (file truncated?)", errSegment)
	}
	idxOff := binary.BigEndian.Uint64(foot[0:])
	idxLen := binary.BigEndian.Uint32(foot[8:])
	blocks := binary.BigEndian.Uint32(foot[16:])
	count := binary.BigEndian.Uint64(foot[20:])
	first, last := binary.BigEndian.Uint64(foot[28:]), binary.BigEndian.Uint64(foot[36:])
	if idxOff+uint64(idxLen) != uint64(size-segmentFooterSize) || uint64(idxLen) != uint64(blocks)*segmentIndexEntry {
		return fmt.Errorf("%w: index at %d+%d for %d blocks in a file of %d bytes", errSegment, idxOff, idxLen, blocks, size)
	}
	if r.meta.size != 0 && (count != r.meta.count || first != r.meta.first || last != r.meta.last) {
		return fmt.Errorf("%w: footer says %d events %d-%d, log recorded %d events %d-%d",
			errSegment, count, first, last, r.meta.count, r.meta.first, r.meta.last)
	}
	idx := make([]byte, idxLen)
	if _, err := r.f.ReadAt(idx, int64(idxOff)); err != nil {
		return err
	}
	if crc32.Checksum(idx, crcTable) != binary.BigEndian.Uint32(foot[12:]) {
		return fmt.Errorf("%w: index checksum mismatch", errSegment)
	}
	r.index = make([]blockIndex, blocks)
	for i := range r.index {
		e := idx[i*segmentIndexEntry:]
		r.index[i] = blockIndex{
			first:  binary.BigEndian.Uint64(e[0:]),
			last:   binary.BigEndian.Uint64(e[8:]),
			offset: binary.BigEndian.Uint64(e[16:]),
			count:  binary.BigEndian.Uint32(e[24:]),
		}
	}
	r.meta.first, r.meta.last, r.meta.count = first, last, count
	return nil
}

// readBlock reads and decompresses block i into dst.
func (r *segmentReader) readBlock(i int, dst []byte) ([]byte, error) {
	b := r.index[i]
	var h [blockHeaderSize]byte
	if _, err := r.f.ReadAt(h[:], int64(b.offset)); err != nil {
		return nil, r.blockErr(b, err)
	}
	stored, raw := binary.BigEndian.Uint32(h[0:]), binary.BigEndian.Uint32(h[4:])
	if raw > maxBlockSize || stored > maxBlockSize || int64(b.offset)+blockHeaderSize+int64(stored) > r.size {
		return nil, r.blockErr(b, fmt.Errorf("%w: block of %d/%d bytes", errSegment, stored, raw))
	}
	buf := make([]byte, stored)
	if _, err := r.f.ReadAt(buf, int64(b.offset)+blockHeaderSize); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: truncated block", errSegment)
		}
		return nil, r.blockErr(b, err)
	}
	if crc32.Checksum(buf, crcTable) != binary.BigEndian.Uint32(h[8:]) {
		return nil, r.blockErr(b, fmt.Errorf("%w: block %w", errSegment, ErrChecksum))
	}
	// Memory is set aside for the raw size only when the zstd frame
	// announces the same size, so that a damaged block header cannot make
	// the reader allocate what the block's own bytes do not claim. (The
	// encoder leaves the size out of frames under 256 bytes; those grow
	// as they decode.)
	var zh zstd.Header
	if err := zh.Decode(buf); err != nil || (zh.HasFCS && zh.FrameContentSize != uint64(raw)) {
		return nil, r.blockErr(b, fmt.Errorf("%w: block frame header does not match its %d bytes", errSegment, raw))
	}
	if zh.HasFCS && cap(dst) < int(raw) {
		dst = make([]byte, 0, raw)
	}
	out, err := r.dec.DecodeAll(buf, dst[:0])
	if err != nil {
		return nil, r.blockErr(b, fmt.Errorf("%w: %w", errSegment, err))
	}
	if len(out) != int(raw) {
		return nil, r.blockErr(b, fmt.Errorf("%w: block of %d bytes, %d expected", errSegment, len(out), raw))
	}
	return out, nil
}

func (r *segmentReader) blockErr(b blockIndex, err error) error {
	return &RecordError{Seq: b.first, Where: r.where(b), Err: err}
}

func (r *segmentReader) where(b blockIndex) string {
	return fmt.Sprintf("archive segment %s block at offset %d", r.name, b.offset)
}

// segmentCursor walks the records of a segment from a sequence number on.
type segmentCursor struct {
	r     *segmentReader
	block int    // index of the block in raw
	raw   []byte // decompressed block
	pos   int    // offset of the next entry in raw
	seq   uint64 // current entry
	rec   []byte
	valid bool
	err   error
}

// seek positions c at the first record with a sequence number >= from.
func (c *segmentCursor) seek(from uint64) {
	c.block = sort.Search(len(c.r.index), func(i int) bool { return c.r.index[i].last >= from })
	c.raw, c.pos, c.valid = c.raw[:0], 0, false
	if c.block >= len(c.r.index) {
		return
	}
	if !c.load() {
		return
	}
	for c.next() && c.seq < from {
	}
}

// load reads the current block.
func (c *segmentCursor) load() bool {
	raw, err := c.r.readBlock(c.block, c.raw)
	if err != nil {
		c.err, c.valid = err, false
		return false
	}
	c.raw, c.pos = raw, 0
	return true
}

// next moves to the next record, reading the next block when needed.
func (c *segmentCursor) next() bool {
	for c.err == nil {
		if c.pos < len(c.raw) {
			return c.parse()
		}
		c.block++
		if c.block >= len(c.r.index) {
			c.valid = false
			return false
		}
		if !c.load() {
			return false
		}
	}
	c.valid = false
	return false
}

func (c *segmentCursor) parse() bool {
	b := c.r.index[c.block]
	fail := func(msg string) bool {
		c.err = &RecordError{Seq: c.seq + 1, Where: c.r.where(b), Err: fmt.Errorf("%w: %s at block offset %d", errSegment, msg, c.pos)}
		c.valid = false
		return false
	}
	if len(c.raw)-c.pos < 9 {
		return fail("truncated entry")
	}
	seq := binary.BigEndian.Uint64(c.raw[c.pos:])
	n, k := binary.Uvarint(c.raw[c.pos+8:])
	if k <= 0 || n > uint64(len(c.raw)-c.pos-8-k) {
		return fail("bad entry length")
	}
	if c.valid && seq <= c.seq || seq < b.first || seq > b.last {
		return fail(fmt.Sprintf("sequence number %d out of order", seq))
	}
	start := c.pos + 8 + k
	c.seq, c.rec, c.valid = seq, c.raw[start:start+int(n)], true
	c.pos = start + int(n)
	return true
}

// decode decodes the current record into e; separate says how e holds
// its strings (decodeEventStrings).
func (c *segmentCursor) decode(e *Event, separate bool) error {
	if err := decodeRecord(c.rec, c.seq, e, separate); err != nil {
		return &RecordError{Seq: c.seq, Where: c.r.where(c.r.index[c.block]), Err: err}
	}
	return nil
}
