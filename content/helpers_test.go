package content

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/log"
)

// testOptions are options for tests: no background compaction, plenty of
// free space, and small segments so that rolling happens.
func testOptions() Options {
	return Options{
		SegmentSize:     256 << 10,
		InlineLimit:     32 << 10,
		CompactInterval: -1,
		FreeSpace:       func(string) (int64, error) { return 1 << 40, nil },
	}
}

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	require.NoError(t, err)
	return s
}

// crash stops s as if the process had died: no seal, no final sync beyond
// what was already done, descriptors and the lock dropped.
func (s *Store) crash() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	s.cancel()
	s.wg.Wait()
	s.closeFiles()
	s.lock.Close()
}

// body returns a deterministic body of n bytes for seed.
func body(seed uint64, n int) []byte {
	b := make([]byte, n)
	io.ReadFull(newGenerator(seed, int64(n)), b)
	return b
}

// generator yields n pseudo-random bytes for a seed, in CRLF-terminated
// lines, without holding them in memory.
type generator struct {
	rng  *rand.Rand
	left int64
	col  int
	// bits are random bytes not used yet, n of them: one draw from rng
	// serves eight bytes, which keeps the 50 MB tests quick under -race.
	bits uint64
	n    int
}

func newGenerator(seed uint64, n int64) *generator {
	return &generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), left: n}
}

func (g *generator) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	for i := range p {
		switch {
		case g.col == 76:
			p[i] = '\r'
			g.col++
		case g.col == 77:
			p[i] = '\n'
			g.col = 0
		default:
			if g.n == 0 {
				g.bits, g.n = g.rng.Uint64(), 8
			}
			p[i] = ' ' + byte(g.bits)%95
			g.bits >>= 8
			g.n--
			g.col++
		}
	}
	g.left -= int64(len(p))
	return len(p), nil
}

func testEnvelope(txn string, rcpts int) Envelope {
	env := Envelope{
		Txn:        txn,
		Session:    "S00000000000000A100",
		Listener:   "mx",
		Sender:     "sender@example.org",
		ClientIP:   "127.0.0.1",
		ClientPort: 40000,
		HELO:       "client.example.org",
		Protocol:   "ESMTP",
		ReceivedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	for i := range rcpts {
		env.Rcpts = append(env.Rcpts, log.Recipient{Addr: "rcpt" + string(rune('a'+i%26)) + "@example.net", Notify: log.NotifyFailure})
	}
	return env
}

// put stores b and returns its reference.
func put(t testing.TB, s *Store, txn string, b []byte) string {
	t.Helper()
	w, err := s.Create(context.Background(), testEnvelope(txn, 2))
	require.NoError(t, err)
	_, err = w.Write(b)
	require.NoError(t, err)
	ref, err := w.Commit(context.Background())
	require.NoError(t, err)
	return ref
}

func readAll(t testing.TB, s *Store, ref string) []byte {
	t.Helper()
	r, err := s.Open(ref)
	require.NoError(t, err)
	defer r.Close()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return b
}

func requireBody(t testing.TB, s *Store, ref string, want []byte) {
	t.Helper()
	got := readAll(t, s, ref)
	if !bytes.Equal(got, want) {
		t.Fatalf("body %s: got %d bytes (sha256 %x), want %d bytes (sha256 %x)",
			ref, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

// scanRefs returns the references Scan reports, sorted.
func scanRefs(t testing.TB, s *Store) []string {
	t.Helper()
	var refs []string
	require.NoError(t, s.Scan(context.Background(), func(b Body) error {
		require.NoError(t, b.Err)
		refs = append(refs, b.Ref)
		return nil
	}))
	sort.Strings(refs)
	return refs
}

// segmentFiles lists the segment files in dir.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	require.NoError(t, err)
	sort.Strings(m)
	return m
}

// flipByte inverts one byte of the file at path.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// refKey parses a reference in a test.
func refKey(t testing.TB, ref string) key {
	t.Helper()
	k, _, err := parseRef(ref)
	require.NoError(t, err)
	return k
}

func u64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// writeLines writes what src yields to w one line at a time, as the SMTP
// server hands a body over, and returns how many lines it wrote.
func writeLines(w io.Writer, src io.Reader) (int, error) {
	r := bufio.NewReaderSize(src, 4<<10)
	lines := 0
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			lines++
			if _, werr := w.Write(line); werr != nil {
				return lines, werr
			}
		}
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
}
