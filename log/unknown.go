package log

import (
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// UnknownFields is what a record held beyond this version's catalogue: the
// schema version it was written with, when that is newer than this
// version's, and every map entry whose key this version does not know, kept
// as raw msgpack together with where in the event it stood. Encoding an
// event writes them back in place, so records pass through an older smx
// unchanged.
type UnknownFields struct {
	// Version is the schema version the record was written with, or 0
	// when it is not newer than this version's.
	Version uint16
	fields  []unknownField
}

// unknownField is one map entry a newer writer added. Where is the path of
// the map it stood in: "" for the event itself, "p" for the payload,
// "p.tls" for a nested map, "p.rc[2]" for an element of a list of maps.
type unknownField struct {
	where string
	kv    []byte // the raw msgpack key followed by the raw value
}

// Len returns the number of unknown fields.
func (u *UnknownFields) Len() int {
	if u == nil {
		return 0
	}
	return len(u.fields)
}

// Fields returns the unknown fields decoded into generic Go values, keyed by
// their path within the event ("p.k" for key k of the payload, "p.rc[2].k"
// for key k of the third recipient), for display by audit tools.
func (u *UnknownFields) Fields() map[string]any {
	if u == nil {
		return nil
	}
	out := make(map[string]any, len(u.fields))
	for _, f := range u.fields {
		d := decoder{data: f.kv}
		key := d.skip()
		var k string
		if err := msgpack.Unmarshal(key, &k); err != nil {
			k = fmt.Sprintf("%x", key)
		}
		var v any
		if err := msgpack.Unmarshal(f.kv[len(key):], &v); err != nil {
			v = fmt.Sprintf("undecodable msgpack %x", f.kv[len(key):])
		}
		path := k
		if f.where != "" {
			path = f.where + "." + k
		}
		out[path] = v
	}
	return out
}

// String lists the paths of the unknown fields, for messages.
func (u *UnknownFields) String() string {
	if u == nil {
		return "none"
	}
	paths := make([]string, 0, len(u.fields))
	for p := range u.Fields() {
		paths = append(paths, p)
	}
	s := strings.Join(paths, ",")
	if u.Version != 0 {
		s = fmt.Sprintf("schema v%d: %s", u.Version, s)
	}
	return s
}

// add records an unknown entry found at path where.
func (u *UnknownFields) add(where string, kv []byte) {
	u.fields = append(u.fields, unknownField{where: where, kv: append([]byte(nil), kv...)})
}

// count returns how many unknown entries belong in the map at where.
func (u *UnknownFields) count(where string) int {
	if u == nil {
		return 0
	}
	n := 0
	for _, f := range u.fields {
		if f.where == where {
			n++
		}
	}
	return n
}

// appendTo appends the raw entries of the map at where.
func (u *UnknownFields) appendTo(b []byte, where string) []byte {
	if u == nil {
		return b
	}
	for _, f := range u.fields {
		if f.where == where {
			b = append(b, f.kv...)
		}
	}
	return b
}
