package ids

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBlockSize is how many server counter values a ServerSequence
// reserves with one fsync of its file. A restart skips what was left of
// the last block, which is nothing to a 64-bit counter.
const DefaultBlockSize = 1 << 16

// FileName is the name of the counter file inside the queue directory.
const FileName = "ids"

// SequenceOptions tune a ServerSequence. The zero value is the default.
type SequenceOptions struct {
	// BlockSize is the number of counter values reserved at a time
	// (default DefaultBlockSize).
	BlockSize uint64
	// Now is the clock; the counter never starts below Now().Unix(), as in
	// the seed's examples (default time.Now).
	Now func() time.Time
}

// ServerSequence hands out the 64-bit counter of server ids. It is safe
// for concurrent use. Every value it returns is below a limit that was
// written and fsynced to its file before the value was returned, and a new
// ServerSequence on the same file starts at or above that limit, so no
// value is ever handed out twice, even after a crash.
type ServerSequence struct {
	path  string
	block uint64

	next  atomic.Uint64 // the next value to hand out
	limit atomic.Uint64 // values below limit are durably reserved

	mu sync.Mutex // serialises reservations (writes of the file)
}

// OpenServerSequence opens (or creates) the counter file at path and
// reserves the first block. The counter starts at the larger of the
// reserved limit found in the file and the current Unix time.
func OpenServerSequence(path string, opts SequenceOptions) (*ServerSequence, error) {
	if opts.BlockSize == 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	stored, err := readLimit(path)
	if err != nil {
		return nil, err
	}
	start := stored
	if now := opts.Now().Unix(); now > 0 && uint64(now) > start {
		start = uint64(now)
	}
	s := &ServerSequence{path: path, block: opts.BlockSize}
	s.next.Store(start)
	s.limit.Store(start)
	if err := s.reserve(start); err != nil {
		return nil, err
	}
	return s, nil
}

// Next returns a new server id with the given process id. It fails only
// when the next block cannot be reserved on disk.
func (s *ServerSequence) Next(process uint8) (Server, error) {
	n := s.next.Add(1) - 1
	if n < s.limit.Load() {
		return Server{Counter: n, Process: process}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n >= s.limit.Load() {
		if err := s.reserve(n); err != nil {
			return Server{}, err
		}
	}
	return Server{Counter: n, Process: process}, nil
}

// Generator returns a generator of ids with a fixed process id that shares
// this sequence's counter.
func (s *ServerSequence) Generator(process uint8) *ServerGenerator {
	return &ServerGenerator{seq: s, process: process}
}

// reserve makes every value up to and including n durable, plus a block.
// The caller holds mu (or is the constructor).
func (s *ServerSequence) reserve(n uint64) error {
	if n > math.MaxUint64-s.block {
		return fmt.Errorf("ids: server counter in %s exhausted", s.path)
	}
	limit := n + s.block
	if err := writeLimit(s.path, limit); err != nil {
		return err
	}
	s.limit.Store(limit)
	return nil
}

// ServerGenerator makes server ids for one SMTP server (one process id).
type ServerGenerator struct {
	seq     *ServerSequence
	process uint8
}

// Next returns a new id; see ServerSequence.Next.
func (g *ServerGenerator) Next() (Server, error) { return g.seq.Next(g.process) }

// readLimit reads the reserved limit; a missing file means 0.
func readLimit(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ids: read %s: %w", path, err)
	}
	line, ok := bytes.CutSuffix(data, []byte("\n"))
	if !ok || len(line) != 16 {
		return 0, fmt.Errorf("ids: %s is corrupt: want 16 hex digits and a newline, found %q; "+
			"to recover, write a value above every id in the event log", path, data)
	}
	v, ok := parseHex(string(line))
	if !ok {
		return 0, fmt.Errorf("ids: %s is corrupt: want 16 hex digits, found %q", path, line)
	}
	return v, nil
}

// writeLimit replaces the file atomically: write a temporary file, fsync
// it, rename it over the old one and fsync the directory.
func writeLimit(path string, limit uint64) error {
	buf := appendHex(make([]byte, 0, 17), limit, 16)
	buf = append(buf, '\n')
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("ids: reserve: %w", err)
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return fmt.Errorf("ids: reserve: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("ids: reserve: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ids: reserve: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ids: reserve: %w", err)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("ids: reserve: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("ids: reserve: fsync %s: %w", filepath.Dir(path), err)
	}
	return nil
}

// ClientGenerator makes delivery agent ids (da_sess, da_ta) for one
// process id. As in the seed they are unique within one run of smxd; the
// counter starts at the value given to NewClientGenerator. It is safe for
// concurrent use.
type ClientGenerator struct {
	process uint8
	counter atomic.Uint32
}

// NewClientGenerator returns a generator whose first id has counter
// start+1.
func NewClientGenerator(process uint8, start uint32) *ClientGenerator {
	g := &ClientGenerator{process: process}
	g.counter.Store(start)
	return g
}

// Next returns a new id for the delivery slot thread.
func (g *ClientGenerator) Next(thread uint32) Client {
	return Client{Process: g.process, Counter: g.counter.Add(1), Thread: thread}
}
