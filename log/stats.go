package log

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Stats are the figures of a Log since it was opened, for the daemon's
// metrics. Events divided by WALSyncs is how many events share a sync
// (group commit); WALSyncTime divided by WALSyncs is the mean sync.
type Stats struct {
	Appends uint64 // Append calls whose events became durable
	Events  uint64 // events those calls appended
	// WALSyncs counts the syncs of Pebble's write-ahead log: one per
	// group of appends, plus one when a WAL file is finished.
	WALSyncs uint64
	// WALSyncTime is the time spent in those syncs, summed.
	WALSyncTime time.Duration
}

// Stats returns the figures of the log since it was opened. A read-only
// Log appends and syncs nothing: its figures are zero.
func (l *Log) Stats() Stats {
	return Stats{
		Appends:     l.stats.appends.Load(),
		Events:      l.stats.events.Load(),
		WALSyncs:    l.stats.walSyncs.Load(),
		WALSyncTime: time.Duration(l.stats.walSyncNanos.Load()),
	}
}

// logStats holds the counters behind Stats.
type logStats struct {
	appends, events atomic.Uint64
	walSyncs        atomic.Uint64
	walSyncNanos    atomic.Int64
}

// walSyncFS is the file system under Pebble with the syncs of WAL files
// (*.log) counted and timed for Stats. It costs two clock readings and two
// atomic additions per sync, against a sync of a fraction of a millisecond
// at best.
type walSyncFS struct {
	vfs.FS
	stats *logStats
}

func (fs walSyncFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return walSyncFile{f, fs.stats}, nil
}

// Create implements vfs.FS.
func (fs walSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

// ReuseForWrite implements vfs.FS: Pebble recycles old WAL files.
func (fs walSyncFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

// OpenReadWrite implements vfs.FS.
func (fs walSyncFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

// walSyncFile is a WAL file whose syncs are counted and timed.
type walSyncFile struct {
	vfs.File
	stats *logStats
}

func (f walSyncFile) count(start time.Time) {
	f.stats.walSyncs.Add(1)
	f.stats.walSyncNanos.Add(int64(time.Since(start)))
}

// Sync implements vfs.File.
func (f walSyncFile) Sync() error {
	defer f.count(time.Now())
	return f.File.Sync()
}

// SyncData implements vfs.File.
func (f walSyncFile) SyncData() error {
	defer f.count(time.Now())
	return f.File.SyncData()
}

// SyncTo implements vfs.File.
func (f walSyncFile) SyncTo(length int64) (bool, error) {
	defer f.count(time.Now())
	return f.File.SyncTo(length)
}
