package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// This file holds the msgpack primitives of the event codec. The events are
// plain msgpack (https://github.com/msgpack/msgpack/blob/master/spec.md) and
// any msgpack library reads them; github.com/vmihailenco/msgpack/v5 decodes
// them into the catalogue structs through their msgpack tags, which the tests
// check. The codec writes and reads the bytes itself instead of going through
// that library's reflection because replay must decode more than a million
// events per second per core: the library's Decoder spends most of its time
// in reflection and interface calls (see BenchmarkDecode*), while these
// functions work on a byte slice with no allocation beyond the strings and
// slices of the event itself.

// msgpack format bytes used here.
const (
	mpNil      = 0xc0
	mpFalse    = 0xc2
	mpTrue     = 0xc3
	mpBin8     = 0xc4
	mpBin16    = 0xc5
	mpBin32    = 0xc6
	mpExt8     = 0xc7
	mpExt16    = 0xc8
	mpExt32    = 0xc9
	mpFloat32  = 0xca
	mpFloat64  = 0xcb
	mpUint8    = 0xcc
	mpUint16   = 0xcd
	mpUint32   = 0xce
	mpUint64   = 0xcf
	mpInt8     = 0xd0
	mpInt16    = 0xd1
	mpInt32    = 0xd2
	mpInt64    = 0xd3
	mpFixExt1  = 0xd4
	mpFixExt2  = 0xd5
	mpFixExt4  = 0xd6
	mpFixExt8  = 0xd7
	mpFixExt16 = 0xd8
	mpStr8     = 0xd9
	mpStr16    = 0xda
	mpStr32    = 0xdb
	mpArray16  = 0xdc
	mpArray32  = 0xdd
	mpMap16    = 0xde
	mpMap32    = 0xdf

	// mpTimestamp is the extension type of the msgpack timestamp.
	mpTimestamp = -1
)

// maxNesting bounds how deep skipValue follows nested arrays and maps in an
// unknown field, so that hostile input cannot exhaust the stack.
const maxNesting = 32

// errShort and errType are wrapped by decoder errors; the decoder adds the
// offset.
var (
	errShort = errors.New("truncated msgpack")
	errType  = errors.New("unexpected msgpack type")
)

// appendMapHeader appends a map header for n entries.
func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(b, mpMap16, byte(n>>8), byte(n))
	default:
		return append(b, mpMap32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// appendArrayHeader appends an array header for n elements.
func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, mpArray16, byte(n>>8), byte(n))
	default:
		return append(b, mpArray32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// appendString appends s as a msgpack str.
func appendString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n <= 31:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, mpStr8, byte(n))
	case n <= math.MaxUint16:
		b = append(b, mpStr16, byte(n>>8), byte(n))
	default:
		b = append(b, mpStr32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

// appendUint appends u in the shortest msgpack form.
func appendUint(b []byte, u uint64) []byte {
	switch {
	case u <= 0x7f:
		return append(b, byte(u))
	case u <= math.MaxUint8:
		return append(b, mpUint8, byte(u))
	case u <= math.MaxUint16:
		return append(b, mpUint16, byte(u>>8), byte(u))
	case u <= math.MaxUint32:
		return append(b, mpUint32, byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	default:
		b = append(b, mpUint64)
		return binary.BigEndian.AppendUint64(b, u)
	}
}

// appendInt appends i in the shortest msgpack form.
func appendInt(b []byte, i int64) []byte {
	if i >= 0 {
		return appendUint(b, uint64(i))
	}
	switch {
	case i >= -32:
		return append(b, byte(i))
	case i >= math.MinInt8:
		return append(b, mpInt8, byte(i))
	case i >= math.MinInt16:
		return append(b, mpInt16, byte(i>>8), byte(i))
	case i >= math.MinInt32:
		return append(b, mpInt32, byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
	default:
		b = append(b, mpInt64)
		return binary.BigEndian.AppendUint64(b, uint64(i))
	}
}

// appendBool appends v.
func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, mpTrue)
	}
	return append(b, mpFalse)
}

// appendTime appends t as a msgpack timestamp (extension type -1) in the
// shortest of its three forms, as the specification describes.
func appendTime(b []byte, t time.Time) []byte {
	sec := t.Unix()
	nsec := int64(t.Nanosecond())
	if sec>>34 == 0 {
		data64 := uint64(nsec)<<34 | uint64(sec)
		if data64&0xffffffff00000000 == 0 {
			b = append(b, mpFixExt4, 0xff)
			return binary.BigEndian.AppendUint32(b, uint32(data64))
		}
		b = append(b, mpFixExt8, 0xff)
		return binary.BigEndian.AppendUint64(b, data64)
	}
	b = append(b, mpExt8, 12, 0xff)
	b = binary.BigEndian.AppendUint32(b, uint32(nsec))
	return binary.BigEndian.AppendUint64(b, uint64(sec))
}

// decoder reads msgpack from a byte slice. Errors are sticky: after the first
// one every read returns a zero value, and err reports what went wrong and
// where, so the payload decoders read like a list of fields.
type decoder struct {
	data []byte
	// text, when set, is data as a string: str returns substrings of it
	// instead of allocating a string per field.
	text string
	pos  int
	err  error
}

// fail records the first error, with the offset it happened at, and moves
// to the end of the input so that every later read comes up short and
// returns a zero value: the fast paths need no error check of their own.
func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = fmt.Errorf("offset %d: %w", d.pos, err)
	}
	d.pos = len(d.data)
}

// need reports whether n more bytes are available, failing if not.
func (d *decoder) need(n int) bool {
	if n >= 0 && n <= len(d.data)-d.pos {
		return true
	}
	d.fail(errShort)
	return false
}

func (d *decoder) byte1() byte {
	if d.pos < len(d.data) {
		c := d.data[d.pos]
		d.pos++
		return c
	}
	d.fail(errShort)
	return 0
}

func (d *decoder) uint16() uint16 {
	if !d.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(d.data[d.pos:])
	d.pos += 2
	return v
}

func (d *decoder) uint32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(d.data[d.pos:])
	d.pos += 4
	return v
}

func (d *decoder) uint64() uint64 {
	if !d.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(d.data[d.pos:])
	d.pos += 8
	return v
}

// peekNil consumes a nil and reports true if the next value is nil.
func (d *decoder) peekNil() bool {
	if d.err == nil && d.pos < len(d.data) && d.data[d.pos] == mpNil {
		d.pos++
		return true
	}
	return false
}

// length checks a container or string length against what is left, so that
// a forged length cannot make the decoder allocate more than the input could
// hold: every element takes at least minSize bytes.
func (d *decoder) length(n uint64, minSize int) int {
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.data)-d.pos)/uint64(minSize) {
		d.fail(errShort)
		return 0
	}
	return int(n)
}

// mapLen reads a map header; nil reads as an empty map.
func (d *decoder) mapLen() int {
	c := d.byte1()
	switch {
	case d.err != nil:
		return 0
	case c&0xf0 == 0x80:
		return d.length(uint64(c&0x0f), 2)
	case c == mpMap16:
		return d.length(uint64(d.uint16()), 2)
	case c == mpMap32:
		return d.length(uint64(d.uint32()), 2)
	case c == mpNil:
		return 0
	}
	d.pos--
	d.fail(fmt.Errorf("%w 0x%02x, want map", errType, c))
	return 0
}

// arrayLen reads an array header. It returns -1 for nil, which decodes as a
// nil slice, while an empty array decodes as an empty slice.
func (d *decoder) arrayLen() int {
	c := d.byte1()
	switch {
	case d.err != nil:
		return 0
	case c&0xf0 == 0x90:
		return d.length(uint64(c&0x0f), 1)
	case c == mpArray16:
		return d.length(uint64(d.uint16()), 1)
	case c == mpArray32:
		return d.length(uint64(d.uint32()), 1)
	case c == mpNil:
		return -1
	}
	d.pos--
	d.fail(fmt.Errorf("%w 0x%02x, want array", errType, c))
	return 0
}

// strBytes reads a str (or bin) and returns its bytes without copying.
func (d *decoder) strBytes() []byte {
	// Fast path: a fixstr, which every key and most values are.
	if d.pos < len(d.data) {
		if c := d.data[d.pos]; c&0xe0 == 0xa0 {
			start := d.pos + 1
			end := start + int(c&0x1f)
			if end <= len(d.data) {
				d.pos = end
				return d.data[start:end:end]
			}
		}
	}
	return d.strBytesSlow()
}

func (d *decoder) strBytesSlow() []byte {
	c := d.byte1()
	var n int
	switch {
	case d.err != nil:
		return nil
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == mpStr8 || c == mpBin8:
		n = int(d.byte1())
	case c == mpStr16 || c == mpBin16:
		n = int(d.uint16())
	case c == mpStr32 || c == mpBin32:
		n = d.length(uint64(d.uint32()), 1)
	case c == mpNil:
		return nil
	default:
		d.pos--
		d.fail(fmt.Errorf("%w 0x%02x, want string", errType, c))
		return nil
	}
	if !d.need(n) {
		return nil
	}
	s := d.data[d.pos : d.pos+n : d.pos+n]
	d.pos += n
	return s
}

// str reads a str as a string.
func (d *decoder) str() string {
	b := d.strBytes()
	switch {
	case len(b) == 0:
		return ""
	case d.text != "":
		return d.text[d.pos-len(b) : d.pos]
	}
	return string(b)
}

// int reads any msgpack integer as an int64.
func (d *decoder) int() int64 {
	if d.pos < len(d.data) {
		if c := d.data[d.pos]; c <= 0x7f {
			d.pos++
			return int64(c)
		}
	}
	c := d.byte1()
	switch {
	case d.err != nil:
		return 0
	case c <= 0x7f:
		return int64(c)
	case c >= 0xe0:
		return int64(int8(c))
	}
	switch c {
	case mpUint8:
		return int64(d.byte1())
	case mpUint16:
		return int64(d.uint16())
	case mpUint32:
		return int64(d.uint32())
	case mpUint64:
		u := d.uint64()
		if u > math.MaxInt64 {
			d.fail(fmt.Errorf("integer %d overflows int64", u))
			return 0
		}
		return int64(u)
	case mpInt8:
		return int64(int8(d.byte1()))
	case mpInt16:
		return int64(int16(d.uint16()))
	case mpInt32:
		return int64(int32(d.uint32()))
	case mpInt64:
		return int64(d.uint64())
	case mpNil:
		return 0
	}
	d.pos--
	d.fail(fmt.Errorf("%w 0x%02x, want integer", errType, c))
	return 0
}

// intRange reads an integer that must lie within [lo, hi].
func (d *decoder) intRange(lo, hi int64) int64 {
	start := d.pos
	v := d.int()
	if d.err == nil && (v < lo || v > hi) {
		d.pos = start
		d.fail(fmt.Errorf("integer %d out of range [%d, %d]", v, lo, hi))
		return 0
	}
	return v
}

func (d *decoder) int32() int32 { return int32(d.intRange(math.MinInt32, math.MaxInt32)) }

// intField reads a Go int, which the catalogue keeps to 32-bit values so
// that a record decodes the same on every platform.
func (d *decoder) intField() int { return int(d.intRange(math.MinInt32, math.MaxInt32)) }

func (d *decoder) uint8() uint8 { return uint8(d.intRange(0, math.MaxUint8)) }

func (d *decoder) bool() bool {
	c := d.byte1()
	switch c {
	case mpTrue:
		return true
	case mpFalse, mpNil:
		return false
	}
	if d.err == nil {
		d.pos--
		d.fail(fmt.Errorf("%w 0x%02x, want bool", errType, c))
	}
	return false
}

// time reads a msgpack timestamp. Times come back in UTC.
func (d *decoder) time() time.Time {
	c := d.byte1()
	if d.err != nil {
		return time.Time{}
	}
	var n int
	switch c {
	case mpNil:
		return time.Time{}
	case mpFixExt4:
		n = 4
	case mpFixExt8:
		n = 8
	case mpExt8:
		n = int(d.byte1())
	default:
		d.pos--
		d.fail(fmt.Errorf("%w 0x%02x, want timestamp", errType, c))
		return time.Time{}
	}
	if typ := int8(d.byte1()); d.err == nil && typ != mpTimestamp {
		d.fail(fmt.Errorf("%w: extension %d, want timestamp", errType, typ))
		return time.Time{}
	}
	var sec, nsec int64
	switch n {
	case 4:
		sec = int64(d.uint32())
	case 8:
		v := d.uint64()
		nsec, sec = int64(v>>34), int64(v&(1<<34-1))
	case 12:
		nsec = int64(d.uint32())
		sec = int64(d.uint64())
	default:
		d.fail(fmt.Errorf("timestamp of %d bytes", n))
		return time.Time{}
	}
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail(fmt.Errorf("timestamp nanoseconds %d out of range", nsec))
		return time.Time{}
	}
	return time.Unix(sec, nsec).UTC()
}

// skip skips one value of any type and returns the bytes it spanned.
func (d *decoder) skip() []byte {
	start := d.pos
	d.skipValue(0)
	if d.err != nil {
		return nil
	}
	return d.data[start:d.pos]
}

func (d *decoder) skipValue(depth int) {
	if depth > maxNesting {
		d.fail(errors.New("msgpack nested too deeply"))
		return
	}
	c := d.byte1()
	if d.err != nil {
		return
	}
	var n int // bytes to skip
	switch {
	case c <= 0x7f || c >= 0xe0 || c == mpNil || c == mpTrue || c == mpFalse:
		return
	case c&0xf0 == 0x80:
		d.skipEntries(int(c&0x0f)*2, depth)
		return
	case c&0xf0 == 0x90:
		d.skipEntries(int(c&0x0f), depth)
		return
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	}
	switch c {
	case mpUint8, mpInt8:
		n = 1
	case mpUint16, mpInt16:
		n = 2
	case mpUint32, mpInt32, mpFloat32:
		n = 4
	case mpUint64, mpInt64, mpFloat64:
		n = 8
	case mpStr8, mpBin8:
		n = int(d.byte1())
	case mpStr16, mpBin16:
		n = int(d.uint16())
	case mpStr32, mpBin32:
		n = d.length(uint64(d.uint32()), 1)
	case mpFixExt1:
		n = 2
	case mpFixExt2:
		n = 3
	case mpFixExt4:
		n = 5
	case mpFixExt8:
		n = 9
	case mpFixExt16:
		n = 17
	case mpExt8:
		n = int(d.byte1()) + 1
	case mpExt16:
		n = int(d.uint16()) + 1
	case mpExt32:
		n = d.length(uint64(d.uint32()), 1) + 1
	case mpArray16:
		d.skipEntries(d.length(uint64(d.uint16()), 1), depth)
		return
	case mpArray32:
		d.skipEntries(d.length(uint64(d.uint32()), 1), depth)
		return
	case mpMap16:
		d.skipEntries(d.length(uint64(d.uint16()), 2)*2, depth)
		return
	case mpMap32:
		d.skipEntries(d.length(uint64(d.uint32()), 2)*2, depth)
		return
	case 0xc1:
		d.pos--
		d.fail(fmt.Errorf("%w 0xc1 (never used)", errType))
		return
	}
	if d.need(n) {
		d.pos += n
	}
}

func (d *decoder) skipEntries(n, depth int) {
	for i := 0; i < n && d.err == nil; i++ {
		d.skipValue(depth + 1)
	}
}
