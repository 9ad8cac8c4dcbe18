package log

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
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The crash test and the read-only test run a writer in a child process:
// the test binary itself, started again with SMX_LOG_CHILD set.
func TestMain(m *testing.M) {
	switch os.Getenv("SMX_LOG_CHILD") {
	case "":
		os.Exit(m.Run())
	case "crash":
		os.Exit(crashChild(os.Getenv("SMX_LOG_DIR"), false))
	case "writer":
		os.Exit(crashChild(os.Getenv("SMX_LOG_DIR"), true))
	case "reader":
		os.Exit(readerChild(os.Getenv("SMX_LOG_DIR")))
	default:
		fmt.Fprintln(os.Stderr, "unknown SMX_LOG_CHILD")
		os.Exit(2)
	}
}

// crashChild opens the log in dir and appends from several goroutines until
// it is killed. After each append returns it prints "first last txn": the
// append is durable. Each append holds 1 to 3 events of one transaction,
// each event's Code being the number of events in its append, so that a
// reader can tell a complete append from a torn one. With archive set it
// also archives everything it can, all the time.
func crashChild(dir string, archive bool) int {
	opts := Options{MemTableSize: 256 << 10} // frequent flushes and compactions
	if archive {
		opts.ArchiveAfter = time.Nanosecond
		opts.SegmentSize = 64 << 10
	}
	l, err := Open(dir, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var out sync.Mutex
	report := func(s string) {
		out.Lock()
		defer out.Unlock()
		os.Stdout.WriteString(s) // unbuffered: once written, the parent may read it
	}
	report("ready\n")
	ctx := context.Background()
	const writers = 8
	for g := range writers {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(g)))
			for n := 0; ; n++ {
				k := 1 + rng.IntN(3)
				txn := fmt.Sprintf("p%d-g%d-%d", os.Getpid(), g, n)
				events := make([]Event, k)
				for i := range events {
					events[i] = Event{Txn: txn, Rcpt: int32(i), Payload: &RcptDelivered{
						Code: k, Reply: strings.Repeat("x", rng.IntN(200)),
					}}
				}
				last, err := l.Append(ctx, events...)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				report(fmt.Sprintf("%d %d %s\n", events[0].Seq, last, txn))
			}
		}()
	}
	if archive {
		for range time.Tick(20 * time.Millisecond) {
			if _, err := l.Archive(ctx, func(string) (time.Time, bool) { return time.Time{}, true }); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	select {}
}

// startChild starts a child writer on dir and returns it with its stdout.
func startChild(t *testing.T, mode, dir string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SMX_LOG_CHILD="+mode, "SMX_LOG_DIR="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	require.NoError(t, err, "child did not start")
	require.Equal(t, "ready\n", line)
	return cmd, r
}

// durableAppend is one append the child reported as durable.
type durableAppend struct {
	first, last uint64
	txn         string
}

func parseReport(t *testing.T, line string) durableAppend {
	t.Helper()
	f := strings.Fields(line)
	require.Len(t, f, 3, "report %q", line)
	first, err1 := strconv.ParseUint(f[0], 10, 64)
	last, err2 := strconv.ParseUint(f[1], 10, 64)
	require.NoError(t, err1)
	require.NoError(t, err2)
	return durableAppend{first, last, f[2]}
}

// TestCrashKeepsEveryDurableEvent kills a child that appends under
// concurrency at random moments (SIGKILL, after it reported a random number
// of durable appends) and checks after each kill that every append it
// reported is in the log, that no append is torn, and that the log is
// gapless. The child continues the same log in the next round.
func TestCrashKeepsEveryDurableEvent(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	var reported []durableAppend
	for round := range rounds {
		cmd, out := startChild(t, "crash", dir)
		// Kill after a random number of durable appends; now and then at
		// once, while the first commits are in flight.
		killAfter := rng.IntN(400)
		if rng.IntN(5) == 0 {
			killAfter = 0
		}
		for range killAfter {
			line, err := out.ReadString('\n')
			require.NoError(t, err)
			reported = append(reported, parseReport(t, line))
		}
		require.NoError(t, cmd.Process.Kill())
		// Reports already in the pipe were durable too.
		rest, _ := io.ReadAll(out)
		for _, line := range strings.Split(strings.TrimSpace(string(rest)), "\n") {
			if line != "" {
				reported = append(reported, parseReport(t, line))
			}
		}
		cmd.Wait()

		l, err := Open(dir, Options{})
		require.NoError(t, err, "round %d", round)
		checkCrashedLog(t, l, reported)
		require.NoError(t, l.Close())
	}
	t.Logf("%d rounds, %d durable appends checked", rounds, len(reported))
}

// checkCrashedLog checks that l holds every reported append and that every
// append in it is whole.
func checkCrashedLog(t *testing.T, l *Log, reported []durableAppend) {
	t.Helper()
	byTxn := map[string][]Event{}
	it := l.Iter(1)
	n := uint64(0)
	for it.Next() {
		e := it.Event()
		n++
		require.Equal(t, n, e.Seq, "gap")
		byTxn[e.Txn] = append(byTxn[e.Txn], e)
	}
	require.NoError(t, it.Err())
	require.NoError(t, it.Close())
	require.Equal(t, l.LastSeq(), n)
	for txn, events := range byTxn {
		k := events[0].Payload.(*RcptDelivered).Code
		require.Len(t, events, k, "append of %s torn", txn)
		for i, e := range events {
			require.Equal(t, events[0].Seq+uint64(i), e.Seq, "append of %s not contiguous", txn)
			require.Equal(t, int32(i), e.Rcpt)
		}
	}
	for _, r := range reported {
		events := byTxn[r.txn]
		require.NotEmpty(t, events, "durable append %s (%d-%d) lost", r.txn, r.first, r.last)
		require.Equal(t, r.first, events[0].Seq, "append %s moved", r.txn)
		require.Equal(t, r.last, events[len(events)-1].Seq, "append %s moved", r.txn)
	}
}
