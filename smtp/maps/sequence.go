package maps

import "context"

// Sequence is a map of type sequence: it tries its maps in order and
// returns the first entry found. When no map has the key but one of them
// failed, the first failure is returned: the key might have been there.
type Sequence struct {
	name string
	maps []Map
}

// NewSequence returns a sequence of maps.
func NewSequence(name string, maps ...Map) *Sequence {
	return &Sequence{name: name, maps: maps}
}

// Lookup implements Map.
func (s *Sequence) Lookup(ctx context.Context, key string) (string, bool, error) {
	var firstErr error
	for _, m := range s.maps {
		v, found, err := m.Lookup(ctx, key)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if found {
			return v, true, nil
		}
	}
	return "", false, firstErr
}

// Snapshot implements Snapshotter: it snapshots every member.
func (s *Sequence) Snapshot() Map {
	views := make([]Map, len(s.maps))
	for i, m := range s.maps {
		views[i] = View(m)
	}
	return &Sequence{name: s.name, maps: views}
}
