package log

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

// Reading a log that another process has open.
//
// Pebble takes an exclusive fcntl lock on the store's LOCK file in every
// Open, read-only ones included (open.go: LockDirectory is called whatever
// Options.ReadOnly says), so a second process cannot open the directory
// the daemon is writing. Opening it anyway with a file system whose Lock
// does nothing would be unsafe: the writer deletes sstables after
// compactions and recycles WAL files while the reader still needs them.
//
// So OpenReadOnly opens a consistent copy, made the way Pebble's own
// Checkpoint makes one but from outside the writing process:
//
//  1. copy the WAL files (*.log);
//  2. copy the OPTIONS file, the marker files and the MANIFEST files;
//  3. hard-link the sstables (*.sst, *.blob), which Pebble never changes
//     once written (copy them where linking is not possible).
//
// The order makes the copy consistent. Anything the MANIFEST (step 2)
// says was flushed to an sstable is in an sstable that still existed in
// step 3, unless a compaction removed it in between, which makes the open
// fail its consistency check and the copy is made again. Everything it
// says is not flushed yet is in a WAL that existed in step 1, because a WAL
// is only deleted after its memtable's flush is recorded in the MANIFEST.
// A WAL caught mid-write ends in a torn record, which WAL replay treats as
// the end of the log (with FormatWALSyncChunks it still reports damage in
// the part that was synced). The copy is opened with Options.ReadOnly: WAL
// replay happens in memory and nothing is written. The copy lives in
// dir/readers/<pid>-<random> (hard links need the same file system), or in
// the system's temporary directory as smx-log-<pid>-<random> when dir is
// not writable; each reader has its own, so concurrent readers, in one
// process or several, never share one. Close removes it. A reader that
// dies first leaves its copy behind, and its hard links would keep the
// sstables the writer has since deleted on the disk: the next Open or
// OpenReadOnly removes every copy whose process is gone.

// maxCopyAttempts bounds how often OpenReadOnly copies the store when
// compactions keep racing with it.
const maxCopyAttempts = 5

// OpenReadOnly opens the log in dir for reading while another process may
// have it open with Open and keep appending. The Log sees the events that
// were written when OpenReadOnly was called; it does not follow new ones.
// Its writing methods, and Subscribe, return ErrReadOnly. Options that
// concern reading (ArchiveDir, CacheSize, Logger) apply; ArchiveDir
// defaults to the directory the writer recorded.
//
// The copy may include events whose sync had not finished when it was
// made, which the writer might still lose in a power failure; a crash of
// the writer process alone loses none of them.
func OpenReadOnly(dir string, opts Options) (*Log, error) {
	opts = opts.withDefaults(dir)
	src := filepath.Join(dir, "pebble")
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("log: open %s read-only: %w", dir, err)
	}
	removeStaleCopies(dir, opts.Logger)
	var lastErr error
	for attempt := 1; attempt <= maxCopyAttempts; attempt++ {
		copyDir, err := makeCopyDir(dir)
		if err != nil {
			return nil, fmt.Errorf("log: open %s read-only: %w", dir, err)
		}
		if err := copyStore(src, copyDir); err != nil {
			os.RemoveAll(copyDir)
			return nil, fmt.Errorf("log: open %s read-only: copy store: %w", dir, err)
		}
		db, err := pebble.Open(copyDir, pebbleOptions(opts, true))
		if err != nil {
			lastErr = openError(dir, copyDir, err)
			os.RemoveAll(copyDir)
			opts.Logger.Debug("read-only copy inconsistent, copying again", "attempt", attempt, "err", err)
			continue
		}
		l, err := open(dir, db, opts, true, new(logStats))
		if err != nil {
			db.Close()
			os.RemoveAll(copyDir)
			return nil, err
		}
		l.copyDir = copyDir
		return l, nil
	}
	return nil, fmt.Errorf("log: read-only, after %d copies: %w", maxCopyAttempts, lastErr)
}

// tempCopyPrefix starts the names of copies in the system's temporary
// directory.
const tempCopyPrefix = "smx-log-"

// makeCopyDir makes a directory of its own for a copy of the store, inside
// dir when that is writable so that sstables can be hard-linked.
func makeCopyDir(dir string) (string, error) {
	pid := strconv.Itoa(os.Getpid()) + "-"
	readers := filepath.Join(dir, "readers")
	if err := os.MkdirAll(readers, 0o750); err == nil {
		if p, err := os.MkdirTemp(readers, pid); err == nil {
			return p, nil
		}
	}
	return os.MkdirTemp("", tempCopyPrefix+pid)
}

// removeStaleCopies removes the copies left behind by read-only Logs whose
// process ended without closing them: in dir/readers, and in the system's
// temporary directory.
func removeStaleCopies(dir string, logger *slog.Logger) {
	removeDeadCopies(filepath.Join(dir, "readers"), "", logger)
	removeDeadCopies(os.TempDir(), tempCopyPrefix, logger)
}

// removeDeadCopies removes the entries of parent named prefix + pid + "-"
// + anything whose process pid no longer exists. A process of another user
// counts as existing (kill says EPERM); a process that took the pid of a
// dead reader keeps its copy until it ends too.
func removeDeadCopies(parent, prefix string, logger *slog.Logger) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			path := filepath.Join(parent, e.Name())
			if err := os.RemoveAll(path); err != nil {
				logger.Warn("removing the read-only copy of a reader that is gone", "dir", path, "err", err)
				continue
			}
			logger.Debug("removed the read-only copy of a reader that is gone", "dir", path)
		}
	}
}

// copyStore copies the Pebble store in src to dst as described above.
func copyStore(src, dst string) error {
	list := func() ([]string, error) {
		entries, err := os.ReadDir(src)
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
		return names, nil
	}
	// 1. WAL files.
	names, err := list()
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasSuffix(n, ".log") {
			if err := copyFile(filepath.Join(src, n), filepath.Join(dst, n)); err != nil {
				return err
			}
		}
	}
	// 2. OPTIONS, markers, MANIFESTs.
	if names, err = list(); err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasPrefix(n, "OPTIONS-") || strings.HasPrefix(n, "marker.") || strings.HasPrefix(n, "MANIFEST-") {
			if err := copyFile(filepath.Join(src, n), filepath.Join(dst, n)); err != nil {
				return err
			}
		}
	}
	// 3. sstables and blob files.
	if names, err = list(); err != nil {
		return err
	}
	link := true
	for _, n := range names {
		if !strings.HasSuffix(n, ".sst") && !strings.HasSuffix(n, ".blob") {
			continue
		}
		from, to := filepath.Join(src, n), filepath.Join(dst, n)
		if link {
			err := os.Link(from, to)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				continue
			}
			link = false // another file system, or not permitted: copy
		}
		if err := copyFile(from, to); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies src to dst. A src that no longer exists is skipped: the
// writer deleted it because it became obsolete.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
