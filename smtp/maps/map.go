package maps

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Map is a key-value lookup table. Lookup folds key to lower case. It
// returns found=false and a nil error when the key is absent; an error means
// the map could not answer (see IsTemporary).
type Map interface {
	Lookup(ctx context.Context, key string) (value string, found bool, err error)
}

// Snapshotter is implemented by maps that are reloaded in place. Snapshot
// returns an immutable view of the current contents, so that the several
// lookups of one lookup order all see the same version of the map.
type Snapshotter interface {
	Snapshot() Map
}

// Reloader is implemented by maps backed by a file. Reload reads the file
// again and swaps the new contents in atomically; when the file cannot be
// read or parsed the old contents stay and the error is returned.
type Reloader interface {
	Reload() error
}

// View returns a snapshot of m if m supports one, otherwise m itself.
func View(m Map) Map {
	if s, ok := m.(Snapshotter); ok {
		return s.Snapshot()
	}
	return m
}

// LookupError is a failed lookup: the map could not say whether the key
// exists.
type LookupError struct {
	Map string // map name
	Key string
	// Temporary is true for failures that may go away (a socket map that
	// times out or answers TEMP or TIMEOUT); false for PERM answers.
	Temporary bool
	Err       error
}

// Error says which map, which key, and whether the failure is temporary.
func (e *LookupError) Error() string {
	kind := "permanent"
	if e.Temporary {
		kind = "temporary"
	}
	return fmt.Sprintf("map %s: lookup %q: %s failure: %v", e.Map, e.Key, kind, e.Err)
}

// Unwrap returns the underlying error.
func (e *LookupError) Unwrap() error { return e.Err }

// IsTemporary reports whether err is a temporary lookup failure. Errors
// that are not LookupErrors (for example a cancelled context) count as
// temporary: the question may get an answer later.
func IsTemporary(err error) bool {
	var le *LookupError
	if errors.As(err, &le) {
		return le.Temporary
	}
	return err != nil
}

// Fold returns s in lower case (ASCII only, as the seed's maps do). It does
// not allocate when s has no upper-case letters.
func Fold(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// Static is an immutable in-memory map. It is what a hash map file compiles
// into, and it is handy for tests.
type Static struct {
	name    string
	entries map[string]string
}

// NewStatic returns a map named name holding entries. Keys are folded to
// lower case; entries is copied.
func NewStatic(name string, entries map[string]string) *Static {
	m := make(map[string]string, len(entries))
	for k, v := range entries {
		m[Fold(k)] = v
	}
	return &Static{name: name, entries: m}
}

// Lookup implements Map.
func (s *Static) Lookup(_ context.Context, key string) (string, bool, error) {
	v, ok := s.entries[Fold(key)]
	return v, ok, nil
}

// Len returns the number of entries.
func (s *Static) Len() int { return len(s.entries) }

// Name returns the map's name.
func (s *Static) Name() string { return s.name }
