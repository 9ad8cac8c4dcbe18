package log

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// flowRecords returns the bodies of n events of realistic mail traffic.
func flowBodies(b *testing.B, n int) [][]byte {
	f := newMailFlow(1)
	out := make([][]byte, n)
	for i := range out {
		e := f.Event()
		body, err := appendEvent(nil, &e)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = body
	}
	return out
}

// BenchmarkDecode measures the hand-written decoder on realistic traffic.
func BenchmarkDecode(b *testing.B) {
	bodies := flowBodies(b, 4096)
	var size int
	for _, x := range bodies {
		size += len(x)
	}
	b.SetBytes(int64(size / len(bodies)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		var e Event
		if err := decodeEvent(bodies[i%len(bodies)], &e); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeMsgpackLibrary decodes the same records with
// github.com/vmihailenco/msgpack/v5 through the struct tags, with a reused
// Decoder: the baseline the hand-written decoder is measured against.
func BenchmarkDecodeMsgpackLibrary(b *testing.B) {
	bodies := flowBodies(b, 4096)
	b.ReportAllocs()
	dec := msgpack.NewDecoder(nil)
	var r bytes.Reader
	i := 0
	for b.Loop() {
		var le libEvent
		body := bodies[i%len(bodies)]
		r.Reset(body)
		dec.Reset(&r)
		if err := dec.Decode(&le); err != nil {
			b.Fatal(err)
		}
		p := newPayload(le.Type)
		r.Reset(le.Payload)
		dec.Reset(&r)
		if err := dec.Decode(p); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEncode measures encoding a record of realistic traffic.
func BenchmarkEncode(b *testing.B) {
	f := newMailFlow(1)
	events := make([]Event, 4096)
	for i := range events {
		events[i] = f.Event()
	}
	b.ReportAllocs()
	var buf []byte
	i := 0
	for b.Loop() {
		var err error
		buf, _, err = appendRecord(buf[:0], &events[i%len(events)])
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "events/s")
}
