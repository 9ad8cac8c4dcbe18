package log

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configures a Log. The zero value of every field means the
// documented default, so Options{} is a working configuration. The daemon
// fills them from the qmgr event_log section of smx.conf; the seed's IBDB
// options are named where a field takes their place.
type Options struct {
	// MaxCommitDelay is how long the log pauses after a WAL sync before
	// the next one, so that more appends share it (IBDB max_commit_delay).
	// The default, zero, does not pause: appends that arrive while a sync
	// is in progress share the next one anyway, which gives group commit
	// under concurrency without adding latency when the log is quiet. A
	// pause costs every append up to its length and bought no throughput
	// in the measurements (docs/eventlog.md); it is there for disks whose
	// syncs are expensive per call. A negative value means zero.
	MaxCommitDelay time.Duration

	// MaxOpenTAs cuts the MaxCommitDelay pause (IBDB max_open_TAs): when
	// at least this many appends are already waiting for a sync as the
	// previous one finishes, the next sync starts at once. Appends that
	// arrive during a pause do not end it. Default 1024.
	MaxOpenTAs int

	// ArchiveDir is where archive segments go; it may be on another disk.
	// Default: the directory "archive" inside the log directory. The
	// path is recorded in the log so that OpenReadOnly finds it.
	ArchiveDir string

	// ArchiveAfter is how long a message must have been finished before
	// Archive moves its events out of the live log. Default 7 days.
	ArchiveAfter time.Duration

	// SegmentSize is the size of uncompressed records after which an
	// archive segment is sealed and the next one begun (IBDB size).
	// Default 64 MiB.
	SegmentSize int64

	// SnapshotsKept is how many projection snapshots SaveSnapshot keeps,
	// newest first. Default 3.
	SnapshotsKept int

	// MemTableSize is the size of Pebble's memtable. Default 64 MiB (see
	// docs/eventlog.md for why).
	MemTableSize int64

	// CacheSize is the size of Pebble's block cache. Default 64 MiB.
	CacheSize int64

	// Clock returns the time Append gives events whose Time is zero, and
	// the time Archive measures ArchiveAfter from. Default time.Now.
	Clock func() time.Time

	// Logger receives debug and warning messages, Pebble's included.
	// Default: discard.
	Logger *slog.Logger

	// archiveDirGiven records that ArchiveDir was set rather than
	// defaulted.
	archiveDirGiven bool
	// fs is the file system under Pebble: vfs.Default, which Open wraps
	// to count and time the WAL's syncs (Stats).
	fs vfs.FS
}

// Defaults.
const (
	DefaultMaxOpenTAs    = 1024
	DefaultArchiveAfter  = 7 * 24 * time.Hour
	DefaultSegmentSize   = 64 << 20
	DefaultSnapshotsKept = 3
	DefaultMemTableSize  = 64 << 20
	DefaultCacheSize     = 64 << 20
)

// withDefaults returns o with every zero field set to its default; dir is
// the log directory.
func (o Options) withDefaults(dir string) Options {
	if o.MaxCommitDelay < 0 {
		o.MaxCommitDelay = 0
	}
	if o.MaxOpenTAs <= 0 {
		o.MaxOpenTAs = DefaultMaxOpenTAs
	}
	o.archiveDirGiven = o.ArchiveDir != ""
	if o.ArchiveDir == "" {
		o.ArchiveDir = filepath.Join(dir, "archive")
	}
	if o.ArchiveAfter <= 0 {
		o.ArchiveAfter = DefaultArchiveAfter
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.SnapshotsKept <= 0 {
		o.SnapshotsKept = DefaultSnapshotsKept
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.fs == nil {
		o.fs = vfs.Default
	}
	return o
}
