package maps

import (
	"context"
	"sync/atomic"
)

// Hash is a map of type hash: a text file of entries (see ParseFile)
// compiled into memory. It stands in for the seed's Berkeley DB hash maps.
// Reload swaps a freshly parsed version in atomically, so every lookup sees
// either the old or the new file, never a mix.
type Hash struct {
	name    string
	path    string
	format  Format
	current atomic.Pointer[Static]
}

// OpenHash reads the map file at path.
func OpenHash(name, path string, format Format) (*Hash, error) {
	h := &Hash{name: name, path: path, format: format}
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
