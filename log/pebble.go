package log

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleFormat is the Pebble format major version of the store. It is the
// newest of Pebble v2.1 and includes FormatWALSyncChunks, with which WAL
// replay tells a torn tail (the end of an unfinished write, dropped) from
// corruption inside the synced part of the WAL (an error), so that a
// damaged log is reported rather than cut short.
const pebbleFormat = pebble.FormatValueSeparation

// pebbleOptions returns the Pebble options of the store. docs/eventlog.md
// gives the reasons for each choice.
func pebbleOptions(o Options, readOnly bool) *pebble.Options {
	po := &pebble.Options{
		FS:                 o.fs,
		FormatMajorVersion: pebbleFormat,
		ReadOnly:           readOnly,
		// Every append is synced (WriteOptions Sync), and appends written
		// during a sync share the next one, so Pebble needs no artificial
		// sync delay (WALMinSyncInterval, set by Open only for
		// MaxCommitDelay) and no background WAL syncing (WALBytesPerSync).
		//
		// A large memtable turns the steady stream of small records into
		// few, large L0 files and leaves room for bursts; recovery replays
		// at most about two memtables of WAL.
		MemTableSize:                uint64(o.MemTableSize),
		MemTableStopWritesThreshold: 4,
		CacheSize:                   o.CacheSize,
		// Keys arrive in ascending order and never overlap, so flushed
		// files move down the levels without rewriting, and compactions
		// mostly drop the ranges Archive deleted. Start compacting L0
		// early so that replays read few files.
		L0CompactionThreshold: 2,
		L0StopWritesThreshold: 32,
		Logger:                pebbleLogger{o.Logger},
		EventListener: &pebble.EventListener{
			// Pebble's default for corruption found in the background
			// (by a compaction) is Logger.Fatalf. The log reports
			// corruption to its readers with the record's position
			// instead, and the daemon keeps serving what it can.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				o.Logger.Error("event log store damaged", "path", info.Path, "details", info.Details)
			},
			BackgroundError: func(err error) {
				o.Logger.Error("event log store background error", "err", err)
			},
		},
	}
	for i := range po.Levels {
		// Replay reads the log front to back; larger blocks compress
		// better and cost fewer index steps per record. Point reads (Get)
		// are rare, so no bloom filter: a sequence number's file is found
		// from the key ranges alone, since every file holds a contiguous
		// run of sequence numbers.
		po.Levels[i].BlockSize = 32 << 10
		po.Levels[i].IndexBlockSize = 256 << 10
		po.Levels[i].FilterPolicy = pebble.NoFilterPolicy
	}
	// The fastest compression everywhere: with zstd on the bottom levels a
	// replay spent about 9% of its time decompressing, and old events
	// leave the live log for zstd-compressed archive segments anyway.
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	return po
}

// pebbleLogger sends Pebble's messages to slog: informational ones at debug
// level, since Pebble reports every flush and compaction.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by Pebble when it cannot go on (for example when the
// MANIFEST cannot be written); Pebble expects it not to return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("pebble: " + msg)
}
