package maps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
)

// DefaultPasswdFile is the system passwd database the passwd map reads.
const DefaultPasswdFile = "/etc/passwd"

// Passwd is a map of type passwd: the system's user database read from a
// passwd(5) file. The key is the user name; the value is the entry without
// its password field: "name:uid:gid:gecos:home:shell". NIS compat lines
// ("+", "-") are skipped. Keys are compared in lower case like every map.
type Passwd struct {
	name    string
	path    string
	current atomic.Pointer[Static]
}

// OpenPasswd reads the passwd file at path ("" means DefaultPasswdFile).
func OpenPasswd(name, path string) (*Passwd, error) {
	if path == "" {
		path = DefaultPasswdFile
	}
	p := &Passwd{name: name, path: path}
	if err := p.Reload(); err != nil {
		return nil, err
	}
	return p, nil
}

// Reload implements Reloader.
func (p *Passwd) Reload() error {
	f, err := os.Open(p.path)
	if err != nil {
		return fmt.Errorf("maps: %w", err)
	}
	defer f.Close()
	entries, err := ParsePasswd(f, p.path)
	if err != nil {
		return err
	}
	p.current.Store(&Static{name: p.name, entries: entries})
	return nil
}

// ParsePasswd reads passwd(5) lines into name -> entry-without-password.
func ParsePasswd(r io.Reader, file string) (map[string]string, error) {
	entries := make(map[string]string)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if text == "" || text[0] == '#' || text[0] == '+' || text[0] == '-' {
			continue
		}
		fields := strings.Split(text, ":")
		if len(fields) != 7 {
			return nil, &FileError{File: file, Line: line, Col: 1,
				Msg: fmt.Sprintf("passwd entry has %d fields, want 7", len(fields))}
		}
		if fields[0] == "" {
			return nil, &FileError{File: file, Line: line, Col: 1, Msg: "empty user name"}
		}
		key := Fold(fields[0])
		if _, dup := entries[key]; dup {
			// getpwnam returns the first entry; so do we.
			continue
		}
		entries[key] = strings.Join(append(fields[:1:1], fields[2:]...), ":")
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &FileError{File: file, Line: line + 1, Col: 1, Msg: "line too long"}
		}
		return nil, fmt.Errorf("%s: read: %w", file, err)
	}
	return entries, nil
}

// Lookup implements Map.
func (p *Passwd) Lookup(ctx context.Context, key string) (string, bool, error) {
	return p.current.Load().Lookup(ctx, key)
}

// Snapshot implements Snapshotter.
func (p *Passwd) Snapshot() Map { return p.current.Load() }
