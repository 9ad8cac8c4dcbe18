package content

import (
	"log/slog"
	"time"
)

// Options configures a Store. A zero field means the documented default, so
// Options{} is a working configuration.
type Options struct {
	// SegmentSize is the size at which the segment that receives new
	// bodies is sealed and a new one started. Default 64 MiB.
	SegmentSize int64

	// InlineLimit is the largest body that is buffered in memory before it
	// is committed into the shared segment. A body that grows beyond it is
	// streamed into a segment file of its own and synced on its own. It
	// bounds the memory of one writer. Default 256 KiB.
	InlineLimit int

	// MinDiskSpace is qmgr min_disk_space: below this many free bytes on
	// the file system of the CDB directory, Accepting reports false and
	// the SMTP server refuses new mail. smx.conf gives it in KB; here it
	// is bytes. Default 100 MiB.
	MinDiskSpace int64

	// OkDiskSpace is qmgr ok_disk_space: once Accepting has reported
	// false, it reports true again only when at least this many bytes are
	// free. smx.conf gives it in KB; here it is bytes. It must be larger
	// than MinDiskSpace. Default twice MinDiskSpace.
	OkDiskSpace int64

	// DiskCheckInterval is how often Accepting asks the file system for
	// its free space; in between it answers from the last look. Default
	// one second.
	DiskCheckInterval time.Duration

	// FreeSpace returns the bytes available to an unprivileged writer on
	// the file system that holds dir. Default: statfs(2). Tests pass a
	// function they control.
	FreeSpace func(dir string) (int64, error)

	// CompactInterval is how often the store looks for sparse segments to
	// compact in the background. Default one minute; a negative value
	// turns background compaction off (Compact can still be called).
	CompactInterval time.Duration

	// CompactAge is how long a segment stays sealed before it may be
	// compacted, so that bodies delivered within minutes are never copied.
	// Default ten minutes.
	CompactAge time.Duration

	// CompactLive is the fraction of live bytes below which a sealed
	// segment older than CompactAge is compacted: its live bodies are
	// copied to a new segment and it is deleted. Default 0.5, which keeps
	// the files of old segments under twice the live bytes in them.
	CompactLive float64

	// Now is the clock that stamps records and ages segments. Default
	// time.Now.
	Now func() time.Time

	// Logger receives debug and error logs. Default: discard.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultSegmentSize       = 64 << 20
	DefaultInlineLimit       = 256 << 10
	DefaultMinDiskSpace      = 100 << 20
	DefaultDiskCheckInterval = time.Second
	DefaultCompactInterval   = time.Minute
	DefaultCompactAge        = 10 * time.Minute
	DefaultCompactLive       = 0.5
)

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.InlineLimit <= 0 {
		o.InlineLimit = DefaultInlineLimit
	}
	if o.MinDiskSpace <= 0 {
		o.MinDiskSpace = DefaultMinDiskSpace
	}
	if o.OkDiskSpace <= o.MinDiskSpace {
		o.OkDiskSpace = 2 * o.MinDiskSpace
	}
	if o.DiskCheckInterval <= 0 {
		o.DiskCheckInterval = DefaultDiskCheckInterval
	}
	if o.FreeSpace == nil {
		o.FreeSpace = freeSpace
	}
	if o.CompactInterval == 0 {
		o.CompactInterval = DefaultCompactInterval
	}
	if o.CompactAge == 0 {
		o.CompactAge = DefaultCompactAge
	}
	if o.CompactLive <= 0 || o.CompactLive > 1 {
		o.CompactLive = DefaultCompactLive
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
