package content

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// The on-disk format. docs/content.md describes it byte by byte; keep the
// two in step. All integers are little-endian; every checksum is CRC-32C
// (Castagnoli).
const (
	formatVersion = 1

	fileHeaderSize   = 64 // at offset 0 of every segment
	recordHeaderSize = 64 // in front of every record
	trailerSize      = 64 // the last bytes of a sealed segment
	footerEntrySize  = 48 // one per record, between the records and the trailer
	relEntrySize     = 32 // one per mark in a .rel file

	segmentMagic = "SMXCDB\r\n"
	recordMagic  = "CDBR"
	trailerMagic = "CDBT"

	segmentExt = ".seg"
	releaseExt = ".rel"
	lockName   = "LOCK"
)

// segmentKind says how the records of a segment were written.
type segmentKind uint32

const (
	// kindReceived segments hold bodies as the SMTP server committed them:
	// every record's key is its own location.
	kindReceived segmentKind = 1
	// kindCompacted segments hold bodies copied by compaction: a record's
	// key names where it was first written.
	kindCompacted segmentKind = 2
)

func (k segmentKind) String() string {
	switch k {
	case kindReceived:
		return "received"
	case kindCompacted:
		return "compacted"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func crc32Update(c uint32, b []byte) uint32 { return crc32.Update(c, castagnoli, b) }

// ErrNotFound is returned for a reference that names no stored body: it
// was released, or it never existed.
var ErrNotFound = errors.New("no such body")

// ErrCorrupt is returned when stored bytes fail their checksum. A body that
// fails is never served.
var ErrCorrupt = errors.New("checksum mismatch")

// ErrClosed is returned by every method of a closed Store.
var ErrClosed = errors.New("content store closed")

// key is the permanent identity of a body: the segment and offset where it
// was first written. A reference is a key plus the record's header checksum.
type key struct {
	seg uint64
	off int64
}

// location is where a record is now.
type location struct {
	seg uint64
	off int64
}

// formatRef renders a reference: segment id (16 hex digits), offset (hex)
// and the record header checksum (8 hex digits), joined by dashes.
func formatRef(k key, check uint32) string {
	var b [16 + 1 + 16 + 1 + 8]byte
	out := b[:0]
	out = appendHexPadded(out, k.seg, 16)
	out = append(out, '-')
	out = strconv.AppendUint(out, uint64(k.off), 16)
	out = append(out, '-')
	out = appendHexPadded(out, uint64(check), 8)
	return string(out)
}

func appendHexPadded(dst []byte, v uint64, width int) []byte {
	const digits = "0123456789abcdef"
	for i := width - 1; i >= 0; i-- {
		dst = append(dst, digits[(v>>(4*uint(i)))&0xf])
	}
	return dst
}

// parseRef is the inverse of formatRef. It accepts exactly what formatRef
// produces.
func parseRef(ref string) (key, uint32, error) {
	bad := func(why string) (key, uint32, error) {
		return key{}, 0, fmt.Errorf("cdb: malformed reference %q: %s", ref, why)
	}
	seg, rest, ok := strings.Cut(ref, "-")
	if !ok {
		return bad("want SEGMENT-OFFSET-CHECK")
	}
	off, check, ok := strings.Cut(rest, "-")
	if !ok {
		return bad("want SEGMENT-OFFSET-CHECK")
	}
	if len(seg) != 16 || !lowerHex(seg) {
		return bad("segment is not 16 lower-case hex digits")
	}
	if len(off) == 0 || len(off) > 16 || !lowerHex(off) || (len(off) > 1 && off[0] == '0') {
		return bad("offset is not a hex number")
	}
	if len(check) != 8 || !lowerHex(check) {
		return bad("check is not 8 lower-case hex digits")
	}
	s, _ := strconv.ParseUint(seg, 16, 64)
	o, _ := strconv.ParseUint(off, 16, 64)
	c, _ := strconv.ParseUint(check, 16, 32)
	if o < fileHeaderSize || o > 1<<62 {
		return bad("offset out of range")
	}
	return key{seg: s, off: int64(o)}, uint32(c), nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// segmentName is the file name of segment id.
func segmentName(id uint64) string { return string(appendHexPadded(nil, id, 16)) + segmentExt }

// releaseName is the file name of the release marks of segment id.
func releaseName(id uint64) string { return string(appendHexPadded(nil, id, 16)) + releaseExt }

// parseFileName returns the segment id of a segment or release file name.
func parseFileName(name, ext string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, ext)
	if !ok || len(base) != 16 || !lowerHex(base) {
		return 0, false
	}
	id, err := strconv.ParseUint(base, 16, 64)
	return id, err == nil
}

// fileHeader opens every segment file.
//
//	0  8  magic "SMXCDB\r\n"
//	8  4  format version (1)
//	12 4  kind (1 received, 2 compacted)
//	16 8  segment id
//	24 8  created, Unix nanoseconds
//	32 28 zero
//	60 4  CRC-32C of bytes 0..59
type fileHeader struct {
	kind    segmentKind
	id      uint64
	created int64
}

func (h fileHeader) encode() []byte {
	b := make([]byte, fileHeaderSize)
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint32(b[8:], formatVersion)
	binary.LittleEndian.PutUint32(b[12:], uint32(h.kind))
	binary.LittleEndian.PutUint64(b[16:], h.id)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.created))
	binary.LittleEndian.PutUint32(b[60:], checksum(b[:60]))
	return b
}

func decodeFileHeader(b []byte) (fileHeader, error) {
	if len(b) < fileHeaderSize {
		return fileHeader{}, errors.New("short segment header")
	}
	if string(b[:8]) != segmentMagic {
		return fileHeader{}, errors.New("not a CDB segment (bad magic)")
	}
	if binary.LittleEndian.Uint32(b[60:]) != checksum(b[:60]) {
		return fileHeader{}, fmt.Errorf("segment header: %w", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return fileHeader{}, fmt.Errorf("segment format version %d, want %d", v, formatVersion)
	}
	h := fileHeader{
		kind:    segmentKind(binary.LittleEndian.Uint32(b[12:])),
		id:      binary.LittleEndian.Uint64(b[16:]),
		created: int64(binary.LittleEndian.Uint64(b[24:])),
	}
	if h.kind != kindReceived && h.kind != kindCompacted {
		return fileHeader{}, fmt.Errorf("unknown segment kind %d", uint32(h.kind))
	}
	return h, nil
}

// recordHeader is in front of every record; the body and then the
// envelope follow it.
//
//	0  4  magic "CDBR"
//	4  4  format version (1)
//	8  8  key segment id (where the record was first written)
//	16 8  key offset
//	24 8  body length B
//	32 4  envelope length E
//	36 4  zero
//	40 8  stamp: commit time, Unix nanoseconds
//	48 4  CRC-32C of the body
//	52 4  CRC-32C of the envelope
//	56 4  zero
//	60 4  CRC-32C of bytes 0..59: the check of the reference
type recordHeader struct {
	key     key
	bodyLen int64
	envLen  uint32
	stamp   int64
	bodyCRC uint32
	envCRC  uint32
}

// recordLen is the length of the whole record.
func (h recordHeader) recordLen() int64 {
	return recordHeaderSize + h.bodyLen + int64(h.envLen)
}

// put writes h into b[:recordHeaderSize] and returns the header checksum.
func (h recordHeader) put(b []byte) uint32 {
	b = b[:recordHeaderSize]
	clear(b)
	copy(b, recordMagic)
	binary.LittleEndian.PutUint32(b[4:], formatVersion)
	binary.LittleEndian.PutUint64(b[8:], h.key.seg)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.key.off))
	binary.LittleEndian.PutUint64(b[24:], uint64(h.bodyLen))
	binary.LittleEndian.PutUint32(b[32:], h.envLen)
	binary.LittleEndian.PutUint64(b[40:], uint64(h.stamp))
	binary.LittleEndian.PutUint32(b[48:], h.bodyCRC)
	binary.LittleEndian.PutUint32(b[52:], h.envCRC)
	check := checksum(b[:60])
	binary.LittleEndian.PutUint32(b[60:], check)
	return check
}

// maxRecordBody bounds the body length a header may claim, so that a
// damaged header cannot make a reader allocate or seek absurdly.
const maxRecordBody = 1 << 40

// decodeRecordHeader parses and checks a record header and returns it with
// its checksum.
func decodeRecordHeader(b []byte) (recordHeader, uint32, error) {
	if len(b) < recordHeaderSize {
		return recordHeader{}, 0, errors.New("short record header")
	}
	if string(b[:4]) != recordMagic {
		return recordHeader{}, 0, errors.New("no record here (bad magic)")
	}
	check := binary.LittleEndian.Uint32(b[60:])
	if check != checksum(b[:60]) {
		return recordHeader{}, 0, fmt.Errorf("record header: %w", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != formatVersion {
		return recordHeader{}, 0, fmt.Errorf("record format version %d, want %d", v, formatVersion)
	}
	h := recordHeader{
		key:     key{seg: binary.LittleEndian.Uint64(b[8:]), off: int64(binary.LittleEndian.Uint64(b[16:]))},
		bodyLen: int64(binary.LittleEndian.Uint64(b[24:])),
		envLen:  binary.LittleEndian.Uint32(b[32:]),
		stamp:   int64(binary.LittleEndian.Uint64(b[40:])),
		bodyCRC: binary.LittleEndian.Uint32(b[48:]),
		envCRC:  binary.LittleEndian.Uint32(b[52:]),
	}
	if h.bodyLen < 0 || h.bodyLen > maxRecordBody || h.key.off < fileHeaderSize {
		return recordHeader{}, 0, errors.New("record header out of range")
	}
	return h, check, nil
}

// footerEntry describes one record of a sealed segment, so that the
// references in a segment can be listed without reading its records.
//
//	0  8  offset of the record in this segment
//	8  8  key segment id
//	16 8  key offset
//	24 8  record length (header, body and envelope)
//	32 8  stamp (as in the record header)
//	40 4  the record's check (its header checksum)
//	44 4  zero
type footerEntry struct {
	off    int64
	key    key
	length int64
	stamp  int64
	check  uint32
}

func (e footerEntry) put(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], uint64(e.off))
	binary.LittleEndian.PutUint64(b[8:], e.key.seg)
	binary.LittleEndian.PutUint64(b[16:], uint64(e.key.off))
	binary.LittleEndian.PutUint64(b[24:], uint64(e.length))
	binary.LittleEndian.PutUint64(b[32:], uint64(e.stamp))
	binary.LittleEndian.PutUint32(b[40:], e.check)
	binary.LittleEndian.PutUint32(b[44:], 0)
}

func decodeFooterEntry(b []byte) footerEntry {
	return footerEntry{
		off:    int64(binary.LittleEndian.Uint64(b[0:])),
		key:    key{seg: binary.LittleEndian.Uint64(b[8:]), off: int64(binary.LittleEndian.Uint64(b[16:]))},
		length: int64(binary.LittleEndian.Uint64(b[24:])),
		stamp:  int64(binary.LittleEndian.Uint64(b[32:])),
		check:  binary.LittleEndian.Uint32(b[40:]),
	}
}

// ref returns the reference of the record e describes.
func (e footerEntry) ref() string { return formatRef(e.key, e.check) }

// trailer ends a sealed segment.
//
//	0  4  magic "CDBT"
//	4  4  format version (1)
//	8  8  record count N
//	16 8  footer offset F: the footer's N entries follow the last record
//	24 8  data bytes: the sum of the record lengths
//	32 8  sealed, Unix nanoseconds
//	40 16 zero
//	56 4  CRC-32C of the footer
//	60 4  CRC-32C of bytes 0..59
//
// A sealed segment is exactly F + 48*N + 64 bytes long.
type trailer struct {
	count     int64
	footerOff int64
	dataBytes int64
	sealed    int64
	footerCRC uint32
}

func (t trailer) encode() []byte {
	b := make([]byte, trailerSize)
	copy(b, trailerMagic)
	binary.LittleEndian.PutUint32(b[4:], formatVersion)
	binary.LittleEndian.PutUint64(b[8:], uint64(t.count))
	binary.LittleEndian.PutUint64(b[16:], uint64(t.footerOff))
	binary.LittleEndian.PutUint64(b[24:], uint64(t.dataBytes))
	binary.LittleEndian.PutUint64(b[32:], uint64(t.sealed))
	binary.LittleEndian.PutUint32(b[56:], t.footerCRC)
	binary.LittleEndian.PutUint32(b[60:], checksum(b[:60]))
	return b
}

// decodeTrailer parses the last trailerSize bytes of a file of size size.
func decodeTrailer(b []byte, size int64) (trailer, error) {
	if len(b) < trailerSize || string(b[:4]) != trailerMagic {
		return trailer{}, errors.New("no trailer")
	}
	if binary.LittleEndian.Uint32(b[60:]) != checksum(b[:60]) {
		return trailer{}, fmt.Errorf("trailer: %w", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != formatVersion {
		return trailer{}, fmt.Errorf("trailer format version %d, want %d", v, formatVersion)
	}
	t := trailer{
		count:     int64(binary.LittleEndian.Uint64(b[8:])),
		footerOff: int64(binary.LittleEndian.Uint64(b[16:])),
		dataBytes: int64(binary.LittleEndian.Uint64(b[24:])),
		sealed:    int64(binary.LittleEndian.Uint64(b[32:])),
		footerCRC: binary.LittleEndian.Uint32(b[56:]),
	}
	if t.count < 0 || t.footerOff < fileHeaderSize || t.count > (size-t.footerOff)/footerEntrySize ||
		t.footerOff+t.count*footerEntrySize+trailerSize != size || t.dataBytes != t.footerOff-fileHeaderSize {
		return trailer{}, errors.New("trailer does not match the file size")
	}
	return t, nil
}

// relEntry is one mark in a .rel file: the record at off (in the segment
// the file belongs to) is no longer live there, because it was released or
// because a newer copy of it supersedes this one (a crash during compaction
// left both; see Store.resolveCopies).
//
//	0  8  offset of the record
//	8  8  record length
//	16 4  the record's check, or 0 when not known
//	20 4  kind: 1 released, 2 superseded
//	24 4  zero
//	28 4  CRC-32C of bytes 0..27
type relEntry struct {
	off        int64
	length     int64
	check      uint32
	superseded bool
}

const (
	relReleased   = 1
	relSuperseded = 2
)

func (e relEntry) put(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], uint64(e.off))
	binary.LittleEndian.PutUint64(b[8:], uint64(e.length))
	binary.LittleEndian.PutUint32(b[16:], e.check)
	kind := uint32(relReleased)
	if e.superseded {
		kind = relSuperseded
	}
	binary.LittleEndian.PutUint32(b[20:], kind)
	binary.LittleEndian.PutUint32(b[24:], 0)
	binary.LittleEndian.PutUint32(b[28:], checksum(b[:28]))
}

func decodeRelEntry(b []byte) (relEntry, bool) {
	if len(b) < relEntrySize || binary.LittleEndian.Uint32(b[28:]) != checksum(b[:28]) {
		return relEntry{}, false
	}
	kind := binary.LittleEndian.Uint32(b[20:])
	e := relEntry{
		off:        int64(binary.LittleEndian.Uint64(b[0:])),
		length:     int64(binary.LittleEndian.Uint64(b[8:])),
		check:      binary.LittleEndian.Uint32(b[16:]),
		superseded: kind == relSuperseded,
	}
	if e.off < fileHeaderSize || e.length < recordHeaderSize || (kind != relReleased && kind != relSuperseded) {
		return relEntry{}, false
	}
	return e, true
}
