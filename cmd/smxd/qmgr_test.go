package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDiskFreeEvery asks the file system at most once per interval of the
// clock it is given.
func TestDiskFreeEvery(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1000, 0)
	calls := 0
	free := diskFreeEvery(dir, time.Second, func() time.Time { calls++; return now })
	first, err := free()
	require.NoError(t, err)
	require.Positive(t, first)
	// Fill the file system a little: within the interval the figure
	// does not move, after it it is asked again.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fill"), make([]byte, 1<<20), 0o600))
	same, err := free()
	require.NoError(t, err)
	require.Equal(t, first, same)
	now = now.Add(time.Second)
	_, err = free()
	require.NoError(t, err)
	require.Equal(t, 3, calls)

	_, err = diskFreeEvery(filepath.Join(dir, "missing"), time.Second, time.Now)()
	require.Error(t, err)
}
