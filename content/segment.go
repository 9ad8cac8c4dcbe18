package content

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// segment is the in-memory state of one segment file. Every field is
// guarded by Store.mu.
type segment struct {
	id       uint64
	kind     segmentKind
	sealed   bool
	sealedAt int64 // Unix nanoseconds; 0 while unsealed
	fileSize int64

	count     int64 // records in the segment
	dataBytes int64 // sum of their lengths
	// released maps the offset of every record in this segment that is no
	// longer live to its length. Release marks in the .rel file, and
	// copies superseded by a newer copy of the same body, are here.
	released      map[int64]int64
	releasedBytes int64
	// superseded lists, among the released, the offsets marked as
	// superseded copies rather than released bodies. Only Open needs it.
	superseded map[int64]bool

	// index lists the records of a segment that is being written; it
	// becomes the footer when the segment is sealed, and is nil after.
	index []footerEntry

	// single is true for a segment that holds one large body; it is
	// opened for each read instead of keeping a descriptor open.
	single bool
	// file is a read descriptor shared by readers; nil until first used.
	file *os.File
	// relFile receives release marks; nil until the first release.
	relFile *os.File
	relSize int64 // bytes of whole marks in relFile

	readers int  // readers and compactions holding the segment
	doomed  bool // removed from Store.segments; unlinked once readers is 0
	damaged bool // compaction found a damaged record: leave it alone
}

func (g *segment) live() int64      { return g.count - int64(len(g.released)) }
func (g *segment) liveBytes() int64 { return g.dataBytes - g.releasedBytes }

// markReleased records that the record at off (of the given length) is no
// longer live. It reports whether it was live before.
func (g *segment) markReleased(off, length int64) bool {
	if _, ok := g.released[off]; ok {
		return false
	}
	if g.released == nil {
		g.released = make(map[int64]int64)
	}
	g.released[off] = length
	g.releasedBytes += length
	return true
}

// readFooter reads the footer entries of a sealed segment file.
func readFooter(f *os.File, size int64) ([]footerEntry, trailer, error) {
	if size < fileHeaderSize+trailerSize {
		return nil, trailer{}, errors.New("no trailer")
	}
	tb := make([]byte, trailerSize)
	if _, err := f.ReadAt(tb, size-trailerSize); err != nil {
		return nil, trailer{}, err
	}
	t, err := decodeTrailer(tb, size)
	if err != nil {
		return nil, trailer{}, err
	}
	fb := make([]byte, t.count*footerEntrySize)
	if _, err := f.ReadAt(fb, t.footerOff); err != nil {
		return nil, trailer{}, err
	}
	if checksum(fb) != t.footerCRC {
		return nil, trailer{}, fmt.Errorf("footer: %w", ErrCorrupt)
	}
	entries := make([]footerEntry, t.count)
	var next int64 = fileHeaderSize
	for i := range entries {
		e := decodeFooterEntry(fb[i*footerEntrySize:])
		if e.off != next || e.length < recordHeaderSize || e.off+e.length > t.footerOff {
			return nil, trailer{}, fmt.Errorf("footer entry %d does not match the records", i)
		}
		next = e.off + e.length
		entries[i] = e
	}
	if next != t.footerOff {
		return nil, trailer{}, errors.New("footer does not cover the records")
	}
	return entries, t, nil
}

// writeSeal appends the footer and trailer for entries at off, cuts the
// file there and returns the sealed file size. The caller syncs.
func writeSeal(f *os.File, off int64, entries []footerEntry, sealedAt int64) (int64, error) {
	b := make([]byte, len(entries)*footerEntrySize, len(entries)*footerEntrySize+trailerSize)
	var data int64
	for i, e := range entries {
		e.put(b[i*footerEntrySize:])
		data += e.length
	}
	t := trailer{count: int64(len(entries)), footerOff: off, dataBytes: data, sealed: sealedAt, footerCRC: checksum(b)}
	b = append(b, t.encode()...)
	if _, err := f.WriteAt(b, off); err != nil {
		return 0, err
	}
	size := off + int64(len(b))
	// A failed write may have left bytes beyond the footer; the trailer
	// must be the last bytes of the file.
	if err := f.Truncate(size); err != nil {
		return 0, err
	}
	return size, nil
}

// scanRecords reads the records of an unsealed segment from the start and
// returns those that are complete and pass every checksum, stopping at the
// first that does not: after a crash, nothing beyond it was acknowledged.
func scanRecords(f *os.File, h fileHeader, size int64) ([]footerEntry, int64) {
	var entries []footerEntry
	off := int64(fileHeaderSize)
	hb := make([]byte, recordHeaderSize)
	buf := make([]byte, 64<<10)
	for off+recordHeaderSize <= size {
		if _, err := f.ReadAt(hb, off); err != nil {
			break
		}
		rh, check, err := decodeRecordHeader(hb)
		if err != nil {
			break
		}
		if h.kind == kindReceived && rh.key != (key{seg: h.id, off: off}) {
			break
		}
		if rh.recordLen() > size-off {
			break
		}
		body := io.NewSectionReader(f, off+recordHeaderSize, rh.bodyLen)
		if c, err := crcOf(body, buf); err != nil || c != rh.bodyCRC {
			break
		}
		env := io.NewSectionReader(f, off+recordHeaderSize+rh.bodyLen, int64(rh.envLen))
		if c, err := crcOf(env, buf); err != nil || c != rh.envCRC {
			break
		}
		entries = append(entries, footerEntry{off: off, key: rh.key, length: rh.recordLen(), stamp: rh.stamp, check: check})
		off += rh.recordLen()
	}
	return entries, off
}

// crcOf returns the CRC-32C of everything r yields.
func crcOf(r io.Reader, buf []byte) (uint32, error) {
	var c uint32
	for {
		n, err := r.Read(buf)
		c = crc32Update(c, buf[:n])
		if err == io.EOF {
			return c, nil
		}
		if err != nil {
			return c, err
		}
	}
}

// syncDir makes the directory entries of dir durable: a new segment must
// be findable after a crash before any record in it is acknowledged.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Store) segmentPath(id uint64) string { return filepath.Join(s.dir, segmentName(id)) }
func (s *Store) releasePath(id uint64) string { return filepath.Join(s.dir, releaseName(id)) }
