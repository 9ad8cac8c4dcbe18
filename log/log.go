package log

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Errors returned by Log methods.
var (
	// ErrClosed is returned by methods of a closed Log, and by Append for
	// events that were not committed before Close.
	ErrClosed = errors.New("log: closed")
	// ErrReadOnly is returned by the writing methods of a Log opened with
	// OpenReadOnly.
	ErrReadOnly = errors.New("log: read-only")
	// ErrNotFound is returned by Get for a sequence number beyond LastSeq.
	ErrNotFound = errors.New("log: no such event")
	// ErrFailed is in the error of every Append after a write or sync of
	// the disk failed: whether the events of the append that failed are
	// durable cannot be known (a record written before a failed sync may
	// reach the disk all the same), and the Log refuses further appends
	// until it is reopened. A caller must not undo what it did for the
	// events (release a body they reference, say) on such an error.
	ErrFailed = errors.New("log: disk write or sync failed, appends refused until reopened")
)

// Log is the event log: an append-only sequence of events in a Pebble store,
// numbered from 1 without gaps, with archive segments for old events,
// snapshots of projection state, and a live tail. Its methods are safe for
// concurrent use.
type Log struct {
	dir      string
	opts     Options
	db       *pebble.DB
	readOnly bool
	// copyDir is the consistent copy a read-only Log reads, removed by
	// Close.
	copyDir string

	// durable is the sequence number of the last event known to be
	// synced; readers see nothing beyond it.
	durable atomic.Uint64

	// Append's state (commit.go). commitMu orders numbering and writing;
	// closeMu is held (read) by appends in progress, so that Close can wait
	// for them.
	commitMu    sync.Mutex
	nextSeq     uint64 // last sequence number handed out
	closed      bool
	failed      error // set once a write or sync fails; appends are refused after it
	closeMu     sync.RWMutex
	syncWaiters atomic.Int64 // appends written and waiting for their sync

	// notify is closed and replaced each time durable advances.
	notifyMu    sync.Mutex
	notify      chan struct{}
	notifyTaken bool // someone waits on notify

	// closing is closed by Close; subscriptions end then.
	closing chan struct{}
	// isClosed is set by Close; the reading methods check it.
	isClosed atomic.Bool
	subs     sync.WaitGroup

	archive   *archive
	archiveMu sync.Mutex // one Archive pass at a time
	snapMu    sync.Mutex

	stats      *logStats // see Stats
	appendBufs sync.Pool // *appendBuf, the encoding buffers of Append
}

// Open opens the log in dir, creating it if it does not exist, and
// recovers it: the last sequence number is that of the last event that was
// durable before the process stopped, whatever way it stopped.
//
// The directory holds the Pebble store (dir/pebble), by default the archive
// (dir/archive), and the temporary copies of OpenReadOnly (dir/readers).
// Only one process may have a log open with Open at a time; others use
// OpenReadOnly.
func Open(dir string, opts Options) (*Log, error) {
	opts = opts.withDefaults(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("log: open %s: %w", dir, err)
	}
	// A reader that died left its copy, whose hard links keep sstables
	// this process deleted on the disk.
	removeStaleCopies(dir, opts.Logger)
	pebbleDir := filepath.Join(dir, "pebble")
	// The sync pause needs the Log, which does not exist yet; until it
	// does, nothing is appended.
	var lp atomic.Pointer[Log]
	stats := new(logStats)
	opts.fs = walSyncFS{FS: opts.fs, stats: stats}
	po := pebbleOptions(opts, false)
	if opts.MaxCommitDelay > 0 {
		po.WALMinSyncInterval = func() time.Duration {
			if l := lp.Load(); l != nil {
				return l.syncPause()
			}
			return 0
		}
	}
	db, err := pebble.Open(pebbleDir, po)
	if err != nil {
		return nil, openError(dir, pebbleDir, err)
	}
	l, err := open(dir, db, opts, false, stats)
	if err != nil {
		db.Close()
		return nil, err
	}
	lp.Store(l)
	return l, nil
}

// syncPause is Pebble's WALMinSyncInterval when MaxCommitDelay is set: the
// pause after a WAL sync before the next, skipped when MaxOpenTAs appends
// are already waiting for a sync as it finishes (appends that arrive during
// the pause do not cut it short).
func (l *Log) syncPause() time.Duration {
	if l.syncWaiters.Load() >= int64(l.opts.MaxOpenTAs) {
		return 0
	}
	return l.opts.MaxCommitDelay
}

// open finishes opening a Log on an open Pebble store; stats are the
// counters of the store's file system.
func open(dir string, db *pebble.DB, opts Options, readOnly bool, stats *logStats) (*Log, error) {
	l := &Log{
		dir:      dir,
		opts:     opts,
		db:       db,
		readOnly: readOnly,
		notify:   make(chan struct{}),
		closing:  make(chan struct{}),
		stats:    stats,
	}
	l.appendBufs.New = func() any { return new(appendBuf) }
	if err := l.checkFormat(); err != nil {
		return nil, err
	}
	archiveDir, err := l.archiveDir()
	if err != nil {
		return nil, err
	}
	if l.archive, err = loadArchive(db, archiveDir, !readOnly, opts.Logger); err != nil {
		return nil, err
	}
	last, err := l.lastLiveSeq()
	if err != nil {
		return nil, err
	}
	last = max(last, l.archive.lastSeq())
	l.nextSeq = last
	l.durable.Store(last)
	opts.Logger.Debug("event log opened", "dir", dir, "last_seq", last, "read_only", readOnly,
		"archive_segments", l.archive.len())
	return l, nil
}

// checkFormat records the store format in a new store and refuses one
// written in a newer format.
func (l *Log) checkFormat() error {
	v, closer, err := l.db.Get(metaFormat)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if l.readOnly {
			return nil
		}
		if err := l.db.Set(metaFormat, []byte{storeFormat}, pebble.Sync); err != nil {
			return fmt.Errorf("log: write format: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("log: read format: %w", err)
	}
	defer closer.Close()
	if len(v) != 1 || v[0] > storeFormat {
		return fmt.Errorf("log: %s: store format %x is newer than this version (%d)", l.dir, v, storeFormat)
	}
	return nil
}

// archiveDir returns the archive directory: the one in the options when
// given, else the one recorded in the store, else the default. A writer
// records the one it uses.
func (l *Log) archiveDir() (string, error) {
	dir := l.opts.ArchiveDir
	if l.readOnly {
		v, closer, err := l.db.Get(metaArchiveDir)
		if err == nil {
			recorded := string(v)
			closer.Close()
			if l.opts.archiveDirGiven {
				return dir, nil
			}
			return recorded, nil
		}
		if !errors.Is(err, pebble.ErrNotFound) {
			return "", fmt.Errorf("log: read archive dir: %w", err)
		}
		return dir, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("log: archive dir %s: %w", dir, err)
	}
	v, closer, err := l.db.Get(metaArchiveDir)
	if err == nil {
		same := bytes.Equal(v, []byte(abs))
		closer.Close()
		if same {
			return abs, nil
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return "", fmt.Errorf("log: read archive dir: %w", err)
	}
	if err := l.db.Set(metaArchiveDir, []byte(abs), pebble.Sync); err != nil {
		return "", fmt.Errorf("log: record archive dir: %w", err)
	}
	return abs, nil
}

// lastLiveSeq returns the sequence number of the last event in Pebble, or 0.
func (l *Log) lastLiveSeq() (uint64, error) {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEvent}, UpperBound: eventKeyEnd})
	if err != nil {
		return 0, fmt.Errorf("log: find last event: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("log: find last event: %w", err)
		}
		return 0, nil
	}
	seq, ok := eventKeySeq(it.Key())
	if !ok {
		return 0, fmt.Errorf("log: find last event: malformed key %x", it.Key())
	}
	return seq, nil
}

// Close stops the log: appends in progress finish, later ones fail with
// ErrClosed, subscriptions end, and the store is closed. Iterators must be
// closed first.
func (l *Log) Close() error {
	l.commitMu.Lock()
	if l.closed {
		l.commitMu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.isClosed.Store(true)
	l.commitMu.Unlock()
	// Wait for appends in progress to get their sync.
	l.closeMu.Lock()
	l.closeMu.Unlock()
	close(l.closing)
	l.subs.Wait()
	// Wait for an Archive pass or a snapshot write in progress; an
	// Archive pass notices isClosed and stops early.
	l.archiveMu.Lock()
	defer l.archiveMu.Unlock()
	l.snapMu.Lock()
	defer l.snapMu.Unlock()
	l.archive.dec.Close()
	err := l.db.Close()
	if l.copyDir != "" {
		if rmErr := os.RemoveAll(l.copyDir); rmErr != nil && err == nil {
			err = rmErr
		}
	}
	if err != nil {
		return fmt.Errorf("log: close %s: %w", l.dir, err)
	}
	return nil
}

// LastSeq returns the sequence number of the last durable event, 0 for an
// empty log.
func (l *Log) LastSeq() uint64 { return l.durable.Load() }

// Get returns the event with sequence number seq, from the live log or the
// archive. It returns ErrNotFound for a number beyond LastSeq and a
// *RecordError for a record that is missing or damaged. Each string of the
// event is an allocation of its own, so keeping one keeps nothing else.
func (l *Log) Get(seq uint64) (Event, error) {
	if l.isClosed.Load() {
		return Event{}, ErrClosed
	}
	if seq == 0 || seq > l.durable.Load() {
		return Event{}, fmt.Errorf("%w: %d (last is %d)", ErrNotFound, seq, l.durable.Load())
	}
	k := makeEventKey(seq)
	v, closer, err := l.db.Get(k[:])
	switch {
	case err == nil:
		defer closer.Close()
		var e Event
		if err := decodeRecord(v, seq, &e, true); err != nil {
			return Event{}, &RecordError{Seq: seq, Where: "live log", Err: err}
		}
		return e, nil
	case !errors.Is(err, pebble.ErrNotFound):
		return Event{}, &RecordError{Seq: seq, Where: "live log", Err: err}
	}
	return l.archive.get(seq)
}

// broadcast wakes everyone waiting for durable to advance. Appends call it
// after every sync, so it does nothing unless someone took the channel.
func (l *Log) broadcast() {
	l.notifyMu.Lock()
	if l.notifyTaken {
		close(l.notify)
		l.notify = make(chan struct{})
		l.notifyTaken = false
	}
	l.notifyMu.Unlock()
}

// durableChanged returns a channel that is closed when durable next
// advances.
func (l *Log) durableChanged() <-chan struct{} {
	l.notifyMu.Lock()
	defer l.notifyMu.Unlock()
	l.notifyTaken = true
	return l.notify
}
