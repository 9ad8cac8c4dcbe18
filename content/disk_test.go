package content

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDiskSpaceHysteresis(t *testing.T) {
	const kb = 1024
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var free int64 = 500 * kb
	var statErr error
	var looks int
	opts := testOptions()
	opts.MinDiskSpace = 100 * kb
	opts.OkDiskSpace = 200 * kb
	opts.DiskCheckInterval = time.Second
	opts.Now = func() time.Time { return now }
	opts.FreeSpace = func(dir string) (int64, error) {
		looks++
		return free, statErr
	}
	s := openStore(t, t.TempDir(), opts)
	defer s.Close()

	step := func(f int64, want bool) {
		t.Helper()
		free = f
		now = now.Add(time.Second)
		require.Equal(t, want, s.Accepting(), "free %d KB", f/kb)
	}
	step(500*kb, true)
	step(150*kb, true)  // between the levels: still accepting
	step(100*kb, true)  // at the minimum: still accepting
	step(99*kb, false)  // below the minimum: refuse
	step(150*kb, false) // between the levels: still refusing
	step(199*kb, false)
	step(200*kb, true) // at the ok level: accept again
	step(120*kb, true)

	// Between looks, the last answer stands.
	n := looks
	free = 10 * kb
	now = now.Add(500 * time.Millisecond)
	require.True(t, s.Accepting())
	require.Equal(t, n, looks)
	now = now.Add(500 * time.Millisecond)
	require.False(t, s.Accepting())
	require.Equal(t, n+1, looks)

	// A failing statfs keeps the last answer.
	statErr = errors.New("injected")
	step(1000*kb, false)
	statErr = nil
	step(1000*kb, true)
}

func TestFreeSpaceOfRealDirectory(t *testing.T) {
	dir := t.TempDir()
	free, err := freeSpace(dir)
	require.NoError(t, err)
	require.Positive(t, free)
	_, err = freeSpace(dir + "/missing")
	require.Error(t, err)
}
