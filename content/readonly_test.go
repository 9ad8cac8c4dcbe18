package content

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// fileState is what a file looked like: enough to see that nothing wrote
// it, renamed it, cut it or touched it.
type fileState struct {
	size  int64
	mode  fs.FileMode
	mtime int64
	sum   [32]byte
}

// dirState records every file of dir.
func dirState(t testing.TB, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fileState{size: fi.Size(), mode: fi.Mode(), mtime: fi.ModTime().UnixNano()}
		if !d.IsDir() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			st.sum = sha256.Sum256(b)
		}
		out[path] = st
		return nil
	}))
	return out
}

// checkBody reads ref from s and compares it with want; it returns an
// error instead of failing, for use while other goroutines run.
func checkBody(s *Store, ref string, want []byte) error {
	r, err := s.Open(ref)
	if err != nil {
		return err
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read %s: %w", ref, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("body %s: got %d bytes, want %d", ref, len(got), len(want))
	}
	return nil
}

// readIntact reads the body Scan listed through Open, which checks it.
func readIntact(s *Store, b Body) error {
	if b.Err != nil {
		return b.Err
	}
	r, err := s.Open(b.Ref)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r)
	return err
}

// TestReadOnlyBesideWriter opens a store read-only while a Store in the
// same process writes, releases and compacts it: every body committed
// before a lookup is found and intact, nothing in the directory changes
// because of the reader, and the writing methods refuse.
func TestReadOnlyBesideWriter(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.CompactAge = -1
	w := openStore(t, dir, opts)
	defer w.Close()
	ctx := context.Background()

	type stored struct {
		ref  string
		body []byte
	}
	var mu sync.Mutex // guards live: a body in it is not released
	live := map[string][]byte{}
	var released []string
	commit := func(i int, rng *rand.Rand) stored {
		n := rng.IntN(12 << 10)
		if rng.IntN(8) == 0 {
			n = opts.InlineLimit + rng.IntN(40<<10) // a segment of its own
		}
		b := body(uint64(i), n)
		return stored{put(t, w, fmt.Sprintf("S%04d", i), b), b}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		st := commit(i, rng)
		live[st.ref] = st.body
	}
	for ref := range live {
		if rng.IntN(3) == 0 {
			require.NoError(t, w.Release(ref))
			delete(live, ref)
			released = append(released, ref)
		}
	}
	require.NoError(t, w.Compact(ctx))

	before := dirState(t, dir)
	ro, err := OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	defer ro.Close()
	for ref, b := range live {
		requireBody(t, ro, ref, b)
		require.True(t, ro.Exists(ref))
	}
	for _, ref := range released {
		require.False(t, ro.Exists(ref), ref)
	}
	require.Len(t, scanRefs(t, ro), len(live))
	require.Equal(t, before, dirState(t, dir), "the read-only store changed the directory")

	_, err = ro.Create(ctx, testEnvelope("S9999", 1))
	require.ErrorIs(t, err, ErrReadOnly)
	for ref := range live {
		require.ErrorIs(t, ro.Release(ref), ErrReadOnly)
		break
	}
	_, err = ro.ReleaseOrphans(ctx, func(string) bool { return false })
	require.ErrorIs(t, err, ErrReadOnly)
	require.ErrorIs(t, ro.Compact(ctx), ErrReadOnly)
	require.Error(t, w.Refresh())

	// Now the writer goes on while the reader reads: commits (the
	// segment receiving bodies grows and rolls under the reader),
	// releases (only of bodies the reader is not looking at) and
	// compactions (bodies move and their segments go away).
	committed := make(chan stored, 16)
	writerErr := make(chan error, 1)
	go func() {
		defer close(committed)
		rng := rand.New(rand.NewPCG(3, 4))
		for i := 100; i < 400; i++ {
			st := commit(i, rng)
			mu.Lock()
			live[st.ref] = st.body
			var victim string
			if rng.IntN(2) == 0 {
				for ref := range live {
					victim = ref
					break
				}
				delete(live, victim)
			}
			mu.Unlock()
			committed <- st
			if victim != "" {
				if err := w.Release(victim); err != nil {
					writerErr <- err
					return
				}
			}
			if i%25 == 0 {
				if err := w.Compact(ctx); err != nil {
					writerErr <- err
					return
				}
			}
		}
		writerErr <- nil
	}()
	checked := 0
	for st := range committed {
		// A body whose Commit returned is found, whatever the writer
		// does meanwhile, unless it was released since.
		mu.Lock()
		if _, ok := live[st.ref]; ok {
			require.NoError(t, checkBody(ro, st.ref, st.body))
			checked++
		}
		if checked%40 == 0 {
			require.NoError(t, ro.Scan(ctx, func(b Body) error {
				if b.Err != nil {
					return b.Err
				}
				if want, ok := live[b.Ref]; ok {
					return checkBody(ro, b.Ref, want)
				}
				return nil
			}))
		}
		mu.Unlock()
	}
	require.NoError(t, <-writerErr)
	require.Positive(t, w.Stats().Compactions)

	require.NoError(t, w.Close())
	require.NoError(t, ro.Refresh())
	for ref, b := range live {
		requireBody(t, ro, ref, b)
	}
	require.Len(t, scanRefs(t, ro), len(live))
	for _, ref := range released {
		require.False(t, ro.Exists(ref), ref)
	}
	t.Logf("%d bodies checked while written, %d live at the end", checked, len(live))
}

// TestReadOnlyTornTail opens a store whose writer died in the middle of a
// record and of a release mark: the complete records are there, the torn
// ones are simply not, and nothing is cut, sealed or removed. The writer's
// own Open then recovers as usual.
func TestReadOnlyTornTail(t *testing.T) {
	dir := t.TempDir()
	w := openStore(t, dir, testOptions())
	var refs []string
	var bodies [][]byte
	for i := range 5 {
		b := body(uint64(i), 3000+i)
		refs = append(refs, put(t, w, fmt.Sprintf("S%d", i), b))
		bodies = append(bodies, b)
	}
	require.NoError(t, w.Release(refs[0]))
	w.crash()

	// A record cut short after its header, and half a release mark.
	segs := segmentFiles(t, dir)
	require.Len(t, segs, 1)
	active := segs[0]
	f, err := os.OpenFile(active, os.O_RDWR|os.O_APPEND, 0)
	require.NoError(t, err)
	fi, err := f.Stat()
	require.NoError(t, err)
	k := refKey(t, refs[1])
	h := recordHeader{key: key{seg: k.seg, off: fi.Size()}, bodyLen: 5000, envLen: 40, stamp: 1}
	hb := make([]byte, recordHeaderSize)
	h.put(hb)
	_, err = f.Write(append(hb, bytes.Repeat([]byte("x"), 700)...))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	rel := strings.TrimSuffix(active, segmentExt) + releaseExt
	rf, err := os.OpenFile(rel, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = rf.Write([]byte("half a mark"))
	require.NoError(t, err)
	require.NoError(t, rf.Close())

	before := dirState(t, dir)
	ro, err := OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	require.False(t, ro.Exists(refs[0]), "released")
	for i := 1; i < len(refs); i++ {
		requireBody(t, ro, refs[i], bodies[i])
	}
	torn := formatRef(h.key, 0)
	require.False(t, ro.Exists(torn))
	require.ElementsMatch(t, refs[1:], scanRefs(t, ro))
	require.NoError(t, ro.Close())
	require.Equal(t, before, dirState(t, dir), "the read-only store changed the directory")

	w = openStore(t, dir, testOptions())
	defer w.Close()
	for i := 1; i < len(refs); i++ {
		requireBody(t, w, refs[i], bodies[i])
	}
}

func TestReadOnlyNeedsTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cdb")
	_, err := OpenReadOnly(dir, Options{})
	require.ErrorIs(t, err, fs.ErrNotExist)
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, fs.ErrNotExist, "OpenReadOnly created the directory")

	// An empty directory is an empty store, and no LOCK is made.
	require.NoError(t, os.Mkdir(dir, 0o750))
	ro, err := OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	require.Empty(t, scanRefs(t, ro))
	require.False(t, ro.Exists(formatRef(key{seg: 1, off: fileHeaderSize}, 7)))
	require.NoError(t, ro.Close())
	require.ErrorIs(t, ro.Close(), ErrClosed)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
}

// The child of TestReadOnlyBesideWriterProcess: a writer in another
// process. It commits bodies from three goroutines and prints
//
//	C <ref> <seed> <size>   Commit returned ref
//	R <ref>                 it wants to release ref
//
// and after an R line waits for the parent's go-ahead on stdin before it
// releases, so that the parent never looks at a body being released. It
// compacts now and then and runs until killed.
const roChildDirEnv = "SMX_CDB_RO_CHILD_DIR"

func roChild(dir string) {
	s, err := Open(dir, crashOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	acks := bufio.NewReader(os.Stdin)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(g)))
			var mine []string
			for i := 0; ; i++ {
				bseed := uint64(g)<<32 | uint64(i)
				n := rng.IntN(6 << 10)
				if rng.IntN(8) == 0 {
					n = 8<<10 + rng.IntN(20<<10)
				}
				w, err := s.Create(context.Background(), testEnvelope(fmt.Sprintf("S%x", bseed), 1))
				if err != nil {
					fmt.Fprintln(os.Stderr, "child create:", err)
					os.Exit(2)
				}
				io.Copy(w, newGenerator(bseed, int64(n)))
				ref, err := w.Commit(context.Background())
				if err != nil {
					fmt.Fprintln(os.Stderr, "child commit:", err)
					os.Exit(2)
				}
				out.Lock()
				fmt.Printf("C %s %d %d\n", ref, bseed, n)
				out.Unlock()
				mine = append(mine, ref)
				if len(mine) > 4 && rng.IntN(2) == 0 {
					j := rng.IntN(len(mine))
					victim := mine[j]
					mine = append(mine[:j], mine[j+1:]...)
					out.Lock()
					fmt.Printf("R %s\n", victim)
					_, err := acks.ReadString('\n')
					out.Unlock()
					if err != nil {
						os.Exit(0) // the parent is gone
					}
					if err := s.Release(victim); err != nil {
						fmt.Fprintln(os.Stderr, "child release:", err)
						os.Exit(2)
					}
				}
				if g == 0 && i%20 == 19 {
					if err := s.Compact(context.Background()); err != nil {
						fmt.Fprintln(os.Stderr, "child compact:", err)
						os.Exit(2)
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestReadOnlyBesideWriterProcess reads a store read-only while another
// process writes, releases and compacts it, then kills that process with
// SIGKILL and reads what it left: every body it reported committed and not
// released is found and intact, during and after; the reader never
// changes the directory; the writer's Open recovers it afterwards.
func TestReadOnlyBesideWriterProcess(t *testing.T) {
	lines := 900
	if testing.Short() {
		lines = 300
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roChildDirEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	live := map[string]crashBody{}
	var ro *Store
	sc := bufio.NewScanner(stdout)
	checked, reopened := 0, 0
	for n := 0; n < lines && sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "C":
			seed, _ := strconv.ParseUint(f[2], 10, 64)
			size, _ := strconv.Atoi(f[3])
			live[f[1]] = crashBody{seed, size}
			if ro == nil || n%150 == 0 {
				if ro != nil {
					require.NoError(t, ro.Close())
					reopened++
				}
				ro, err = OpenReadOnly(dir, Options{})
				require.NoError(t, err)
			}
			// The body just committed, while the child goes on writing.
			require.NoError(t, checkBody(ro, f[1], body(seed, size)), "line %d", n)
			checked++
		case len(f) == 2 && f[0] == "R":
			delete(live, f[1])
			_, err := io.WriteString(stdin, "go\n")
			require.NoError(t, err)
		default:
			t.Fatalf("child said %q", sc.Text())
		}
		if n%100 == 99 {
			// Every body still live, and every body Scan lists, is intact.
			for ref, b := range live {
				require.NoError(t, checkBody(ro, ref, body(b.seed, b.size)), "line %d", n)
			}
			require.NoError(t, ro.Scan(context.Background(), func(b Body) error {
				if _, ok := live[b.Ref]; !ok {
					// Released, or to be: the child may be at it.
					return b.Err
				}
				return readIntact(ro, b)
			}))
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	killed = true
	require.Error(t, cmd.Wait(), "the child runs until killed")
	require.Empty(t, stderr.String(), "child failed")
	require.NoError(t, ro.Close())

	// What the dead writer left: read it without changing it.
	before := dirState(t, dir)
	ro, err = OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	for ref, b := range live {
		requireBody(t, ro, ref, body(b.seed, b.size))
	}
	require.NoError(t, ro.Scan(context.Background(), func(b Body) error { return readIntact(ro, b) }))
	require.NoError(t, ro.Close())
	require.Equal(t, before, dirState(t, dir), "the read-only store changed the directory")

	w := openStore(t, dir, crashOptions())
	defer w.Close()
	for ref, b := range live {
		requireBody(t, w, ref, body(b.seed, b.size))
	}
	t.Logf("%d bodies checked while the child wrote, %d read-only reopenings, %d live at the kill", checked, reopened, len(live))
}

// TestReadOnlyFollowsCompaction opens a view, then has the writer move
// bodies and delete their segments: the view finds them where they went,
// by reading the directory again. A release made after the view was read
// shows after Refresh.
func TestReadOnlyFollowsCompaction(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.CompactAge = -1
	w := openStore(t, dir, opts)
	defer w.Close()
	bodies := map[string][]byte{}
	var order []string
	for i := range 50 {
		b := body(uint64(i), 12<<10)
		ref := put(t, w, fmt.Sprintf("S%d", i), b)
		bodies[ref] = b
		order = append(order, ref)
	}
	for i, ref := range order {
		if i%4 != 0 {
			require.NoError(t, w.Release(ref))
			delete(bodies, ref)
		}
	}
	ro, err := OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	defer ro.Close()
	gen := ro.ro.gen
	require.NoError(t, w.Compact(context.Background()))
	require.Positive(t, w.Stats().Relocated, "nothing was moved")
	for ref, b := range bodies {
		requireBody(t, ro, ref, b)
	}
	require.Greater(t, ro.ro.gen, gen, "the view was not read again")

	var last string
	for ref := range bodies {
		last = ref
	}
	require.NoError(t, w.Release(last))
	require.True(t, ro.Exists(last), "a view answers for the store as it was read")
	require.NoError(t, ro.Refresh())
	require.False(t, ro.Exists(last))
}

// TestReadOnlyScanOfSegmentDeletedMeanwhile deletes a segment between the
// moment a read-only Scan read the directory and the moment it reaches
// that segment (the writer released its only body): Scan goes on with the
// others instead of failing, as its bodies were released while it ran.
func TestReadOnlyScanOfSegmentDeletedMeanwhile(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	w := openStore(t, dir, opts)
	defer w.Close()
	small := put(t, w, "SSMALL", body(1, 100))
	large := put(t, w, "SLARGE", body(2, opts.InlineLimit+100)) // a segment of its own
	ro, err := OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	defer ro.Close()
	require.True(t, ro.Exists(large))

	// Scan is Refresh and then walk; the release comes in between.
	require.NoError(t, w.Release(large))
	var refs []string
	require.NoError(t, ro.walk(context.Background(), func(f *os.File, seg uint64, e footerEntry) error {
		refs = append(refs, readBodyInfo(f, seg, e).Ref)
		return nil
	}))
	require.Equal(t, []string{small}, refs)
}
