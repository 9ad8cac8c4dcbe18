package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// A record is how one event is stored, in Pebble and in archive segments
// alike:
//
//	byte 0     record format, recordFormat
//	bytes 1-4  CRC-32C (Castagnoli), little endian, of the body followed by
//	           the sequence number as 8 big-endian bytes
//	bytes 5-   the body: the event as a msgpack map (codec.go)
//
// The sequence number is not in the body: it is the Pebble key, or the
// record's entry in an archive block. The checksum binds the two, so a
// record that turns up under another sequence number fails its check just
// like a damaged one. Keeping the number out of the body lets appenders
// encode their events before they are numbered, outside the lock.
const (
	recordFormat     = 1
	recordHeaderSize = 5
	// maxRecordSize bounds an encoded event, so that an archive block
	// (segmentBlockSize plus at most one record) stays within what
	// readers accept (maxBlockSize). Events are a few hundred bytes; a
	// TxnReceived with 100,000 recipients is about 5 MiB.
	maxRecordSize = 16 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Errors wrapped by RecordError.
var (
	// ErrChecksum means a record's bytes do not match its checksum.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrMissing means a sequence number in the middle of the log has no
	// record, neither in the live log nor in the archive.
	ErrMissing = errors.New("record missing")
)

// RecordError reports a record that cannot be read, with its position: the
// sequence number and where the record lives.
type RecordError struct {
	Seq   uint64 // sequence number of the record
	Where string // "live log" or "archive segment <file> block at offset <n>"
	Err   error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("log: record %d (%s): %v", e.Seq, e.Where, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// appendRecord appends the record of e to b, with a checksum that does not
// cover the sequence number yet: sealRecord completes it once the number is
// known. The record is b[len(b):] of the returned slice; bodyCRC is the CRC
// of its body.
func appendRecord(b []byte, e *Event) (out []byte, bodyCRC uint32, err error) {
	start := len(b)
	b = append(b, recordFormat, 0, 0, 0, 0)
	b, err = appendEvent(b, e)
	if err != nil {
		return b[:start], 0, err
	}
	return b, crc32.Update(0, crcTable, b[start+recordHeaderSize:]), nil
}

// sealRecord writes the checksum of rec for sequence number seq.
func sealRecord(rec []byte, bodyCRC uint32, seq uint64) {
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	binary.LittleEndian.PutUint32(rec[1:5], crc32.Update(bodyCRC, crcTable, s[:]))
}

// checkRecord verifies the format and checksum of rec for seq and returns
// its body.
func checkRecord(rec []byte, seq uint64) ([]byte, error) {
	if len(rec) < recordHeaderSize {
		return nil, fmt.Errorf("%w: record of %d bytes", ErrChecksum, len(rec))
	}
	if rec[0] != recordFormat {
		return nil, fmt.Errorf("unknown record format %d", rec[0])
	}
	body := rec[recordHeaderSize:]
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	sum := crc32.Update(crc32.Update(0, crcTable, body), crcTable, s[:])
	if want := binary.LittleEndian.Uint32(rec[1:5]); sum != want {
		return nil, fmt.Errorf("%w: computed %08x, stored %08x", ErrChecksum, sum, want)
	}
	return body, nil
}

// decodeRecord checks rec and decodes it as the event with sequence number
// seq; separate says how the event holds its strings (decodeEventStrings).
func decodeRecord(rec []byte, seq uint64, e *Event, separate bool) error {
	body, err := checkRecord(rec, seq)
	if err != nil {
		return err
	}
	*e = Event{Seq: seq}
	return decodeEventStrings(body, e, separate)
}

// recordHeader returns the time and transaction of a record body without
// decoding its payload, for the archive pass.
func recordHeader(body []byte) (txn string, t time.Time, err error) {
	d := decoder{data: body}
	n := d.mapLen()
	for i := 0; i < n && d.err == nil; i++ {
		switch string(d.strBytes()) {
		case "ts":
			t = d.time()
		case "x":
			txn = d.str()
		default:
			d.skip()
		}
	}
	return txn, t, d.err
}
