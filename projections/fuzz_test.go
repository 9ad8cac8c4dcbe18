package projections

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"
)

// FuzzRestore feeds the snapshot decoder arbitrary bodies with a valid
// checksum (a wrong one is refused before decoding). Whatever decodes must
// behave: dump, schedule, snapshot again, and restore to the same state.
func FuzzRestore(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3} {
		q := New()
		applyAll(q, genStream(seed, 60))
		var b bytes.Buffer
		if err := q.Snapshot(&b); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes()[:b.Len()-4])
	}
	f.Add([]byte{})
	f.Add([]byte("\xafsmx-projections\x01"))
	f.Fuzz(func(t *testing.T, body []byte) {
		data := binary.BigEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli))
		q, err := RestoreBytes(data)
		if err != nil {
			return
		}
		first := dumpString(q)
		var b bytes.Buffer
		if err := q.Snapshot(&b); err != nil {
			t.Fatal(err)
		}
		again, err := RestoreBytes(b.Bytes())
		if err != nil {
			t.Fatalf("a snapshot of a restored queue does not restore: %v", err)
		}
		if got := dumpString(again); got != first {
			t.Fatalf("state changed through a snapshot:\n%s\nvs\n%s", first, got)
		}
		if ps := durableProblems(again.Check(nil)); len(ps) > 0 {
			t.Fatalf("restored state breaks invariants: %v", ps)
		}
		far := time.Unix(0, 1<<62)
		for _, name := range []QueueName{IQDB, DEFEDB} {
			for _, r := range again.Take(name, far, 1<<20) {
				again.Untake(r.Txn, r.Rcpt)
			}
		}
		again.Releasable()
		again.Destinations()
	})
}
