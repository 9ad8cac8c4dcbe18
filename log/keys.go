package log

import "encoding/binary"

// The Pebble key space. Every key starts with a one-byte prefix:
//
//	'e' seq(8)            an event record (record.go); seq big-endian, so
//	                      key order is sequence order
//	'm' name              metadata: "format" (the store format), "archivedir"
//	                      (where archive segments live), "seg" num(8) (one
//	                      archive segment, segment.go)
//	's' seq(8) chunk(4)   snapshot chunks (snapshot.go); chunk 0 is the
//	                      header
const (
	prefixEvent    = 'e'
	prefixMeta     = 'm'
	prefixSnapshot = 's'
)

// storeFormat is the version of the key layout; Open refuses a store with a
// newer one.
const storeFormat = 1

var (
	metaFormat     = []byte("mformat")
	metaArchiveDir = []byte("marchivedir")
	metaSegPrefix  = []byte("mseg")
)

type eventKey [9]byte

func makeEventKey(seq uint64) eventKey {
	var k eventKey
	k[0] = prefixEvent
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// eventKeySeq returns the sequence number of an event key.
func eventKeySeq(k []byte) (uint64, bool) {
	if len(k) != 9 || k[0] != prefixEvent {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

// eventKeyEnd is the first key after every event key.
var eventKeyEnd = []byte{prefixEvent + 1}

func segmentMetaKey(num uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), metaSegPrefix...), num)
}

func snapshotKey(seq uint64, chunk uint32) []byte {
	k := make([]byte, 13)
	k[0] = prefixSnapshot
	binary.BigEndian.PutUint64(k[1:], seq)
	binary.BigEndian.PutUint32(k[9:], chunk)
	return k
}

// prefixEnd returns the first key after every key that starts with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
