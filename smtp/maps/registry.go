package maps

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Map types of the seed's map declarations.
const (
	TypeHash     = "hash"
	TypePasswd   = "passwd"
	TypeSequence = "sequence"
	TypeSocket   = "socket"
)

// Spec declares one map: a `map NAME { ... }` section of smx.conf as the
// daemon hands it over (seed 001, "Declaring Maps for SMAR").
type Spec struct {
	Name string
	// Type is one of hash, passwd, sequence, socket (option type).
	Type string
	// File is the map file (option file) for hash; for passwd an
	// optional path that replaces /etc/passwd (used by tests).
	File string
	// Format is the syntax of a hash file.
	Format Format
	// Validate, if set, checks the entries of a hash map before a version
	// is used, at open and at every reload.
	Validate func(map[string]string) error
	// MapName is the name sent to a socket map server (option mapname).
	MapName string
	// Path is the unix socket of a socket map (option path).
	Path string
	// Address and Port are the inet socket of a socket map (options
	// address and port).
	Address string
	Port    int
	// Timeout bounds one socket map request; zero means 5 s.
	Timeout time.Duration
	// Maps lists the members of a sequence (option maps); they must be
	// declared before the sequence.
	Maps []string
	// Dialer opens socket map connections; nil means a net.Dialer.
	Dialer Dialer
}

// Set is the collection of declared maps, by name.
type Set struct {
	maps  map[string]Map
	order []string
}

// Open builds every map in specs, in order. A sequence may only name maps
// declared before it, as the seed requires.
func Open(specs []Spec) (*Set, error) {
	s := &Set{maps: make(map[string]Map, len(specs))}
	for _, sp := range specs {
		if sp.Name == "" {
			return nil, errors.New("maps: map without a name")
		}
		if _, dup := s.maps[sp.Name]; dup {
			return nil, fmt.Errorf("maps: map %s declared twice", sp.Name)
		}
		m, err := s.build(sp)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.maps[sp.Name] = m
		s.order = append(s.order, sp.Name)
	}
	return s, nil
}

func (s *Set) build(sp Spec) (Map, error) {
	switch sp.Type {
	case TypeHash:
		if sp.File == "" {
			return nil, fmt.Errorf("maps: hash map %s: no file", sp.Name)
		}
		return OpenHash(sp.Name, sp.File, sp.Format, sp.Validate)
	case TypePasswd:
		return OpenPasswd(sp.Name, sp.File)
	case TypeSequence:
		if len(sp.Maps) == 0 {
			return nil, fmt.Errorf("maps: sequence map %s: no maps", sp.Name)
		}
		members := make([]Map, len(sp.Maps))
		for i, name := range sp.Maps {
			m, ok := s.maps[name]
			if !ok {
				return nil, fmt.Errorf("maps: sequence map %s: map %s is not declared before it", sp.Name, name)
			}
			members[i] = m
		}
		return NewSequence(sp.Name, members...), nil
	case TypeSocket:
		opts := SocketOptions{MapName: sp.MapName, Timeout: sp.Timeout, Dialer: sp.Dialer}
		switch {
		case sp.Path != "" && sp.Address != "":
			return nil, fmt.Errorf("maps: socket map %s: both path and address given", sp.Name)
		case sp.Path != "":
			opts.Network, opts.Address = "unix", sp.Path
		case sp.Address != "" && sp.Port > 0:
			opts.Network, opts.Address = "tcp", net.JoinHostPort(sp.Address, strconv.Itoa(sp.Port))
		default:
			return nil, fmt.Errorf("maps: socket map %s: needs path, or address and port", sp.Name)
		}
		return NewSocket(sp.Name, opts)
	}
	return nil, fmt.Errorf("maps: map %s: unknown type %q", sp.Name, sp.Type)
}

// Add puts a map built elsewhere (for example a Static in tests) into the
// set under name.
func (s *Set) Add(name string, m Map) {
	if _, ok := s.maps[name]; !ok {
		s.order = append(s.order, name)
	}
	s.maps[name] = m
}

// Get returns the map declared as name.
func (s *Set) Get(name string) (Map, bool) {
	m, ok := s.maps[name]
	return m, ok
}

// Names returns the declared names in declaration order.
func (s *Set) Names() []string { return append([]string(nil), s.order...) }

// Reload re-reads every file-backed map. Each map is swapped on its own:
// one that fails to load keeps its old contents, and its error is part of
// the joined error returned.
func (s *Set) Reload() error {
	var errs []error
	for _, name := range s.order {
		if r, ok := s.maps[name].(Reloader); ok {
			if err := r.Reload(); err != nil {
				errs = append(errs, fmt.Errorf("maps: reload %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close releases socket map connections.
func (s *Set) Close() error {
	var errs []error
	for _, m := range s.maps {
		if c, ok := m.(interface{ Close() error }); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
