package maps

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Hash is a map of type hash: a text file of entries (see ParseFile)
// compiled into memory. It stands in for the seed's Berkeley DB hash maps.
// Reload swaps a freshly parsed version in atomically, so every lookup sees
// either the old or the new file, never a mix.
type Hash struct {
	name     string
	path     string
	format   Format
	validate func(map[string]string) error
	current  atomic.Pointer[Static]
}

// OpenHash reads the map file at path. validate, if not nil, checks the
// entries of every version before it is used (for example that each
// mailertable right-hand side parses); a version it refuses is not loaded.
func OpenHash(name, path string, format Format, validate func(map[string]string) error) (*Hash, error) {
	h := &Hash{name: name, path: path, format: format, validate: validate}
	if err := h.Reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// Reload implements Reloader. On error the old contents stay in use.
func (h *Hash) Reload() error {
	entries, err := ReadFile(h.path, h.format)
	if err != nil {
		return err
	}
	if h.validate != nil {
		if err := h.validate(entries); err != nil {
			return fmt.Errorf("%s: %w", h.path, err)
		}
	}
	// ReadFile already folded the keys; wrap without copying again.
	h.current.Store(&Static{name: h.name, entries: entries})
	return nil
}

// Lookup implements Map.
func (h *Hash) Lookup(ctx context.Context, key string) (string, bool, error) {
	return h.current.Load().Lookup(ctx, key)
}

// Snapshot implements Snapshotter.
func (h *Hash) Snapshot() Map { return h.current.Load() }

// Len returns the number of entries in the current version.
func (h *Hash) Len() int { return h.current.Load().Len() }

// Path returns the file the map is read from.
func (h *Hash) Path() string { return h.path }
