package log

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func encodeForTest(t testing.TB, e Event) []byte {
	t.Helper()
	b, err := appendEvent(nil, &e)
	require.NoError(t, err)
	return b
}

func TestCodecRoundTripEveryType(t *testing.T) {
	seen := map[EventType]bool{}
	for _, want := range everyType() {
		t.Run(want.Type().String(), func(t *testing.T) {
			seen[want.Type()] = true
			body := encodeForTest(t, want)
			var got, separate Event
			require.NoError(t, decodeEvent(body, &got))
			require.Equal(t, want, got)
			require.Nil(t, got.Unknown)
			require.NoError(t, decodeEventStrings(body, &separate, true))
			require.Equal(t, want, separate)

			// The zero payload round-trips too: every field is left out.
			zero := Event{Payload: newPayload(want.Type())}
			var gotZero Event
			require.NoError(t, decodeEvent(encodeForTest(t, zero), &gotZero))
			require.Equal(t, zero, gotZero)
		})
	}
	for typ := range eventTypeNames {
		if eventTypeNames[typ] != "" {
			require.True(t, seen[EventType(typ)], "everyType lacks %s", EventType(typ))
		}
	}
}

func TestRecordChecksumCoversSeq(t *testing.T) {
	e := everyType()[0]
	rec, crc, err := appendRecord(nil, &e)
	require.NoError(t, err)
	sealRecord(rec, crc, 42)

	var got Event
	require.NoError(t, decodeRecord(rec, 42, &got, false))
	require.Equal(t, uint64(42), got.Seq)

	// The same bytes under another sequence number fail the check.
	require.ErrorIs(t, decodeRecord(rec, 43, &got, false), ErrChecksum)

	// So does any single flipped bit.
	for i := range rec {
		for bit := 0; bit < 8; bit++ {
			bad := bytes.Clone(rec)
			bad[i] ^= 1 << bit
			if err := decodeRecord(bad, 42, &got, false); err == nil {
				t.Fatalf("flipping bit %d of byte %d went unnoticed", bit, i)
			}
		}
	}
}

// libEvent is an event as github.com/vmihailenco/msgpack/v5 sees it
// through the msgpack tags of the catalogue.
type libEvent struct {
	Type    EventType          `msgpack:"t"`
	Version uint16             `msgpack:"v"`
	Time    time.Time          `msgpack:"ts,omitempty"`
	Txn     string             `msgpack:"x,omitempty"`
	Rcpt    int32              `msgpack:"r,omitempty"`
	Payload msgpack.RawMessage `msgpack:"p"`
}

type libEventOut struct {
	Type    EventType `msgpack:"t"`
	Version uint16    `msgpack:"v"`
	Time    time.Time `msgpack:"ts,omitempty"`
	Txn     string    `msgpack:"x,omitempty"`
	Rcpt    int32     `msgpack:"r,omitempty"`
	Payload Payload   `msgpack:"p"`
}

// TestCodecAgreesWithMsgpackLibrary checks the hand-written codec against
// the msgpack library reading and writing the catalogue structs by their
// tags, in both directions: the tags document the format and the codec
// must keep to them.
func TestCodecAgreesWithMsgpackLibrary(t *testing.T) {
	for _, want := range everyType() {
		t.Run(want.Type().String(), func(t *testing.T) {
			body := encodeForTest(t, want)

			// The library reads what the codec wrote.
			var le libEvent
			require.NoError(t, msgpack.Unmarshal(body, &le))
			require.Equal(t, want.Type(), le.Type)
			require.Equal(t, SchemaVersion(want.Type()), le.Version)
			p := newPayload(le.Type)
			require.NoError(t, msgpack.Unmarshal(le.Payload, p))
			viaLib := Event{Time: le.Time, Txn: le.Txn, Rcpt: le.Rcpt, Payload: p}
			require.Equal(t, body, encodeForTest(t, viaLib), "library lost or changed fields")

			// The codec reads what the library wrote.
			out, err := msgpack.Marshal(libEventOut{Type: want.Type(), Version: SchemaVersion(want.Type()),
				Time: want.Time, Txn: want.Txn, Rcpt: want.Rcpt, Payload: want.Payload})
			require.NoError(t, err)
			var got Event
			require.NoError(t, decodeEvent(out, &got))
			require.Nil(t, got.Unknown, "codec did not know a key the library wrote: %v", got.Unknown)
			// The library leaves empty slices out (omitempty), so compare
			// the re-encoded forms with empty slices removed.
			require.Equal(t, encodeForTest(t, withoutEmptySlices(want)), encodeForTest(t, got))
		})
	}
}

// withoutEmptySlices returns a copy of e with its payload's empty non-nil
// slices set to nil.
func withoutEmptySlices(e Event) Event {
	p := reflect.New(reflect.TypeOf(e.Payload).Elem())
	p.Elem().Set(reflect.ValueOf(e.Payload).Elem())
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Slice:
			if v.Len() == 0 {
				v.Set(reflect.Zero(v.Type()))
				return
			}
			cp := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			reflect.Copy(cp, v)
			v.Set(cp)
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i))
				}
			}
		}
	}
	walk(p.Elem())
	e.Payload = p.Interface().(Payload)
	return e
}

// newerRecord builds the body of a TxnReceived as a future version 3 might
// write it: new keys in the event, the payload, a recipient and the TLS
// facts.
func newerRecord(t *testing.T) []byte {
	t.Helper()
	m := map[string]any{
		"t": 1, "v": 3, "ts": t0, "x": "S0000000000000a01", "r": -1,
		"zz": []any{"future", 1},
		"p": map[string]any{
			"ss": "S0000000000000901", "f": "alice@example.org",
			"rc": []any{
				map[string]any{"a": "bob@example.net"},
				map[string]any{"a": "carol@example.net", "pri": 7, "n": 4},
			},
			"tls": map[string]any{"v": "TLSv1.3", "kx": "X25519MLKEM768"},
			"qq":  map[string]any{"nested": []any{1, 2, 3}},
		},
	}
	b, err := msgpack.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestUnknownFieldsArePreserved(t *testing.T) {
	body := newerRecord(t)
	var e Event
	require.NoError(t, decodeEvent(body, &e))
	p := e.Payload.(*TxnReceived)
	require.Equal(t, "alice@example.org", p.Sender)
	require.Equal(t, []Recipient{{Addr: "bob@example.net"}, {Addr: "carol@example.net", Notify: NotifyFailure}}, p.Rcpts)
	require.Equal(t, "TLSv1.3", p.TLS.Version)
	require.NotNil(t, e.Unknown)
	require.Equal(t, uint16(3), e.Unknown.Version)
	require.Equal(t, 4, e.Unknown.Len())
	fields := e.Unknown.Fields()
	require.Contains(t, fields, "zz")
	require.Contains(t, fields, "p.qq")
	require.Contains(t, fields, "p.rc[1].pri")
	require.Equal(t, "X25519MLKEM768", fields["p.tls.kx"])

	// Encoding again writes everything back where it was.
	again := encodeForTest(t, e)
	var before, after map[string]any
	require.NoError(t, msgpack.Unmarshal(body, &before))
	require.NoError(t, msgpack.Unmarshal(again, &after))
	require.Equal(t, before, after)
}

func TestUnknownEventTypeIsAnError(t *testing.T) {
	b, err := msgpack.Marshal(map[string]any{"t": 999, "v": 1, "p": map[string]any{"a": 1}})
	require.NoError(t, err)
	var e Event
	err = decodeEvent(b, &e)
	require.ErrorIs(t, err, ErrUnknownEventType)
	require.Contains(t, err.Error(), "999")
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good := encodeForTest(t, everyType()[0])
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"not a map", []byte{0x91, 0x01}},
		{"truncated", good[:len(good)-3]},
		{"trailing bytes", append(bytes.Clone(good), 0x00)},
		{"no type", mustMarshal(t, map[string]any{"v": 1, "p": map[string]any{}})},
		{"no version", mustMarshal(t, map[string]any{"t": 6, "p": map[string]any{}})},
		{"no payload", mustMarshal(t, map[string]any{"t": 6, "v": 1})},
		{"wrong field type", mustMarshal(t, map[string]any{"t": 6, "v": 1, "p": map[string]any{"co": "x"}})},
		{"rcpt out of range", mustMarshal(t, map[string]any{"t": 6, "v": 1, "r": int64(1) << 40, "p": map[string]any{}})},
		{"forged length", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Event
			require.Error(t, decodeEvent(tc.body, &e))
		})
	}
	// The payload may come before the type.
	b := mustMarshal(t, map[string]any{"p": map[string]any{"co": 250}, "v": 1, "t": 6})
	var e Event
	require.NoError(t, decodeEvent(b, &e))
	require.Equal(t, 250, e.Payload.(*RcptDelivered).Code)
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestEncodeRejectsUnknownPayload(t *testing.T) {
	_, err := appendEvent(nil, &Event{})
	require.Error(t, err)
	_, err = appendEvent(nil, &Event{Payload: foreignPayload{}})
	require.True(t, errors.Is(err, ErrUnknownEventType))
}

type foreignPayload struct{}

func (foreignPayload) EventType() EventType { return 200 }

func TestTimesOutsideTheNanosecondRange(t *testing.T) {
	for _, tm := range []time.Time{
		time.Unix(0, 0).UTC(),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2500, 1, 1, 0, 0, 0, 5, time.UTC),
		time.Date(2106, 2, 7, 6, 28, 15, 0, time.UTC),
	} {
		e := Event{Time: tm, Payload: &RcptDeferred{NextTry: tm}}
		var got Event
		require.NoError(t, decodeEvent(encodeForTest(t, e), &got))
		require.True(t, tm.Equal(got.Time), "%v != %v", tm, got.Time)
	}
}
