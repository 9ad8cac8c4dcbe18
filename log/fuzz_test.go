package log

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"
)

// FuzzDecodeEvent feeds arbitrary bytes to the event decoder. It must never
// panic or allocate without bound, and whatever it accepts must encode and
// decode again to the same event, unknown fields included.
func FuzzDecodeEvent(f *testing.F) {
	for _, e := range everyType() {
		b, err := appendEvent(nil, &e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	flow := newMailFlow(1)
	for range 20 {
		e := flow.Event()
		b, _ := appendEvent(nil, &e)
		f.Add(b)
	}
	for _, v := range []any{
		map[string]any{"t": 1, "v": 3, "zz": 1, "p": map[string]any{"rc": []any{map[string]any{"a": "x", "q": []any{1}}}, "tls": map[string]any{"kx": "y"}}},
		map[string]any{"p": map[string]any{"co": 250}, "v": 1, "t": 6},
		map[string]any{"t": 999, "v": 1, "p": map[string]any{}},
		map[string]any{"t": 6, "v": 1, "p": nil},
		map[string]any{"t": 2, "v": 1, "p": map[string]any{"h": []any{map[string]any{"a": []any{"1", nil}}}}},
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xa1, 0x70, 0xdd, 0x7f, 0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		var e, sep Event
		err := decodeEvent(data, &e)
		sepErr := decodeEventStrings(data, &sep, true)
		if (err == nil) != (sepErr == nil) {
			t.Fatalf("shared strings: %v; separate strings: %v", err, sepErr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(e, sep) {
			t.Fatalf("the ways of holding strings decode differently:\n%+v\n%+v", e, sep)
		}
		again, err := appendEvent(nil, &e)
		if err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
		var e2 Event
		if err := decodeEvent(again, &e2); err != nil {
			t.Fatalf("re-encoded event does not decode: %v\n%x", err, again)
		}
		u1, u2 := e.Unknown, e2.Unknown
		e.Unknown, e2.Unknown = nil, nil
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", e, e2)
		}
		if u1.Len() != u2.Len() || (u1 != nil && u1.Version != u2.Version) ||
			!reflect.DeepEqual(u1.Fields(), u2.Fields()) {
			t.Fatalf("round trip changed the unknown fields: %v / %v", u1, u2)
		}
	})
}

// FuzzSegment feeds arbitrary files to the archive segment reader: it must
// report damage, never panic or read out of bounds.
func FuzzSegment(f *testing.F) {
	dir := f.TempDir()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	defer enc.Close()
	w, err := createSegment(dir, 1, enc)
	if err != nil {
		f.Fatal(err)
	}
	flow := newMailFlow(2)
	for seq := uint64(1); seq <= 40; seq++ {
		e := flow.Event()
		rec, crc, err := appendRecord(nil, &e)
		if err != nil {
			f.Fatal(err)
		}
		sealRecord(rec, crc, seq)
		if err := w.add(seq*2, rec); err != nil {
			f.Fatal(err)
		}
	}
	if _, err := w.finish(); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(segmentMagic))

	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxBlockSize), zstd.WithDecoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	defer dec.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := newSegmentReader("fuzz", bytes.NewReader(data), int64(len(data)), segmentMeta{num: 1}, dec)
		if err != nil {
			return
		}
		c := segmentCursor{r: r}
		c.seek(0)
		var prev uint64
		for n := 0; c.valid; n++ {
			if n > len(data) {
				t.Fatal("more records than bytes")
			}
			if c.seq <= prev && n > 0 {
				t.Fatalf("sequence %d after %d", c.seq, prev)
			}
			prev = c.seq
			var e Event
			_ = c.decode(&e, n%2 == 0)
			c.next()
		}
	})
}
