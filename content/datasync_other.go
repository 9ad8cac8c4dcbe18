//go:build !linux

package content

import "os"

// datasync flushes f to stable storage. Without fdatasync(2) it is fsync.
func datasync(f *os.File) error { return f.Sync() }
