package content

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// The crash test re-executes the test binary as a child that writes bodies
// from several goroutines, releases some of them and compacts, printing a
// line for each body it was told is durable. The parent kills it with
// SIGKILL at a random point and checks, after recovery, that every body
// reported durable and not released reads back byte for byte.
//
// Child output, one line per event:
//
//	C <ref> <seed> <size>   Commit returned ref: the body is durable
//	R <ref>                 about to release ref (it may or may not survive)
const (
	crashDirEnv  = "SMX_CDB_CRASH_DIR"
	crashSeedEnv = "SMX_CDB_CRASH_SEED"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(roChildDirEnv); dir != "" {
		roChild(dir)
		os.Exit(0)
	}
	if dir := os.Getenv(crashDirEnv); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		crashChild(dir, seed)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashOptions are small enough that every path runs in a short round:
// segments roll, large bodies spill, compaction runs.
func crashOptions() Options {
	return Options{
		SegmentSize:     64 << 10,
		InlineLimit:     8 << 10,
		CompactInterval: -1,
		CompactAge:      -1,
		FreeSpace:       func(string) (int64, error) { return 1 << 40, nil },
	}
}

func crashChild(dir string, seed uint64) {
	s, err := Open(dir, crashOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Fprintf(os.Stdout, format, args...)
		out.Unlock()
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			var mine []string
			for i := 0; ; i++ {
				bseed := seed<<20 | uint64(g)<<16 | uint64(i)
				n := rng.IntN(12 << 10)
				if rng.IntN(10) == 0 {
					n = rng.IntN(40 << 10)
				}
				w, err := s.Create(context.Background(), testEnvelope(fmt.Sprintf("S%x", bseed), 1+rng.IntN(3)))
				if err != nil {
					fmt.Fprintln(os.Stderr, "child create:", err)
					os.Exit(2)
				}
				io.CopyBuffer(w, newGenerator(bseed, int64(n)), make([]byte, 1+rng.IntN(4096)))
				ref, err := w.Commit(context.Background())
				if err != nil {
					fmt.Fprintln(os.Stderr, "child commit:", err)
					os.Exit(2)
				}
				say("C %s %d %d\n", ref, bseed, n)
				mine = append(mine, ref)
				if len(mine) > 3 && rng.IntN(3) > 0 {
					j := rng.IntN(len(mine))
					ref := mine[j]
					mine = append(mine[:j], mine[j+1:]...)
					say("R %s\n", ref)
					if err := s.Release(ref); err != nil {
						fmt.Fprintln(os.Stderr, "child release:", err)
						os.Exit(2)
					}
				}
				if g == 0 && i%16 == 15 {
					if err := s.Compact(context.Background()); err != nil {
						fmt.Fprintln(os.Stderr, "child compact:", err)
						os.Exit(2)
					}
				}
			}
		}()
	}
	wg.Wait()
}

type crashBody struct {
	seed uint64
	size int
}

func TestCrashNeverLosesDurableBodies(t *testing.T) {
	rounds := 24
	if testing.Short() {
		rounds = 6
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 42))
	live := map[string]crashBody{}
	var totalCommits, totalReleases, relocated int
	for round := range rounds {
		seed := uint64(round + 1)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s=%d", crashSeedEnv, seed))
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())

		killAfter := 1 + rng.IntN(250)
		sc := bufio.NewScanner(stdout)
		lines := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 4 && f[0] == "C":
				bseed, _ := strconv.ParseUint(f[2], 10, 64)
				size, _ := strconv.Atoi(f[3])
				live[f[1]] = crashBody{bseed, size}
				totalCommits++
			case len(f) == 2 && f[0] == "R":
				delete(live, f[1])
				totalReleases++
			default:
				continue
			}
			lines++
			if lines == killAfter {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		err = cmd.Wait()
		require.Error(t, err, "the child runs until killed; stderr: %s", stderr.String())
		require.Empty(t, stderr.String(), "child failed")
		require.GreaterOrEqual(t, lines, killAfter, "child stopped early")

		// Recover, then check every durable body that was not released.
		s := openStore(t, dir, crashOptions())
		relocated += s.Stats().Relocated
		for ref, b := range live {
			requireBody(t, s, ref, body(b.seed, b.size))
		}
		// Every body the store reports must be intact, including those
		// whose Commit had not returned when the child died.
		require.NoError(t, s.Scan(context.Background(), func(b Body) error {
			require.NoError(t, b.Err, "round %d", round)
			r, err := s.Open(b.Ref)
			require.NoError(t, err, "round %d: scanned body %s", round, b.Ref)
			r.Close()
			return nil
		}))
		// Release part of what survived, as delivery would.
		for ref := range live {
			if rng.IntN(3) == 0 {
				require.NoError(t, s.Release(ref))
				delete(live, ref)
			}
		}
		require.NoError(t, s.Close())
	}
	t.Logf("%d rounds, %d bodies reported durable, %d released by the children, %d still live, %d found moved by compaction",
		rounds, totalCommits, totalReleases, len(live), relocated)
	require.Greater(t, totalCommits, rounds)
	require.Positive(t, relocated, "the children compacted")
}
