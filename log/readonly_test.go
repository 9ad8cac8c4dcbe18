package log

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadOnlyWhileAnotherProcessWrites opens the log read-only, again and
// again, while a child process appends to it, flushes, compacts and
// archives all the time; every copy must be a gapless log holding at least
// what the writer had reported durable before the copy began.
func TestReadOnlyWhileAnotherProcessWrites(t *testing.T) {
	dir := t.TempDir()
	cmd, out := startChild(t, "writer", dir)
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var durable atomic.Uint64
	reports := make(chan struct{}, 1)
	go func() {
		for {
			line, err := out.ReadString('\n')
			if err != nil {
				return
			}
			r := parseReport(t, line)
			for {
				cur := durable.Load()
				if r.last <= cur || durable.CompareAndSwap(cur, r.last) {
					break
				}
			}
			select {
			case reports <- struct{}{}:
			default:
			}
		}
	}()

	// Pebble's directory lock keeps a second writer out.
	_, err := Open(dir, Options{})
	require.Error(t, err)

	opens := 8
	if testing.Short() {
		opens = 3
	}
	archived := false
	var last uint64
	for i := range opens {
		// Let the writer get through a memtable or so (and flushes,
		// compactions and archive passes) since the last round.
		for durable.Load() < last+1500 {
			<-reports
		}
		before := durable.Load()
		ro, err := OpenReadOnly(dir, Options{})
		require.NoError(t, err, "open %d", i)
		require.GreaterOrEqual(t, ro.LastSeq(), before, "open %d misses durable events", i)
		checkCrashedLog(t, ro, nil)
		last = ro.LastSeq()
		archived = archived || ro.archive.len() > 0

		_, err = ro.Append(context.Background(), everyType()[0])
		require.ErrorIs(t, err, ErrReadOnly)
		_, err = ro.Subscribe(context.Background(), 1)
		require.ErrorIs(t, err, ErrReadOnly)
		copyDir := ro.copyDir
		require.DirExists(t, copyDir)
		require.NoError(t, ro.Close())
		require.NoDirExists(t, copyDir, "copy not removed")
	}
	require.True(t, archived, "the writer's archive passes were not seen")

	// A copy left behind by a process that is gone is removed by the next
	// read-only open.
	stale := filepath.Join(dir, "readers", "999999999-1")
	require.NoError(t, os.MkdirAll(stale, 0o750))
	ro, err := OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	require.NoError(t, ro.Close())
	require.NoDirExists(t, stale)
}

// readerChild opens the log in dir read-only, prints the directory of its
// copy and waits to be killed.
func readerChild(dir string) int {
	ro, err := OpenReadOnly(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ready\n%s\n", ro.copyDir)
	select {}
}

// TestCrashedReaderCopyIsRemoved kills a process that has the log open
// read-only: the copy it leaves, whose hard links would keep sstables the
// writer deletes on the disk, is removed when the writer opens the log,
// and when the next reader does.
func TestCrashedReaderCopyIsRemoved(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	_, err := l.Append(context.Background(), everyType()...)
	require.NoError(t, err)
	require.NoError(t, l.Close())

	crashReader := func() string {
		cmd, out := startChild(t, "reader", dir)
		line, err := out.ReadString('\n')
		require.NoError(t, err)
		copyDir := strings.TrimSpace(line)
		require.DirExists(t, copyDir)
		require.Equal(t, filepath.Join(dir, "readers"), filepath.Dir(copyDir))
		require.NoError(t, cmd.Process.Kill())
		cmd.Wait()
		require.DirExists(t, copyDir, "a killed reader cannot clean up")
		return copyDir
	}

	copyDir := crashReader()
	l = openTest(t, dir, Options{})
	require.NoDirExists(t, copyDir, "the writer's Open left a dead reader's copy")
	require.NoError(t, l.Close())

	copyDir = crashReader()
	ro, err := OpenReadOnly(dir, Options{})
	require.NoError(t, err)
	require.NoDirExists(t, copyDir, "OpenReadOnly left a dead reader's copy")
	require.NoError(t, ro.Close())
}

// TestConcurrentReaders opens the log read-only from several goroutines at
// once, and twice from one: every reader gets a copy of its own and reads
// the whole log, and closing them leaves nothing behind.
func TestConcurrentReaders(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	want := appendFlow(t, l, newMailFlow(3), 500, finishedSet{})

	const readers = 6
	logs := make([]*Log, readers)
	var wg sync.WaitGroup
	for i := range logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ro, err := OpenReadOnly(dir, Options{})
			if err != nil {
				t.Error(err)
				return
			}
			logs[i] = ro
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, ro := range logs {
		require.NotNil(t, ro)
		require.False(t, seen[ro.copyDir], "two readers share %s", ro.copyDir)
		seen[ro.copyDir] = true
		require.Equal(t, filepath.Join(dir, "readers"), filepath.Dir(ro.copyDir))
		requireSameEvents(t, want, readAll(t, ro, 1))
	}
	for _, ro := range logs {
		require.NoError(t, ro.Close())
	}
	left, err := os.ReadDir(filepath.Join(dir, "readers"))
	require.NoError(t, err)
	require.Empty(t, left, "copies left behind")
}

func TestReadOnlyOfMissingLog(t *testing.T) {
	_, err := OpenReadOnly(filepath.Join(t.TempDir(), "nothing"), Options{})
	require.Error(t, err)
}
