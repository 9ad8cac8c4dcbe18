package log

import (
	"context"
	"os"
	"path/filepath"
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

func TestReadOnlyOfMissingLog(t *testing.T) {
	_, err := OpenReadOnly(filepath.Join(t.TempDir(), "nothing"), Options{})
	require.Error(t, err)
}
