package log

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/batchrepr"
	"github.com/cockroachdb/pebble/v2/record"
)

// When Pebble cannot replay its WAL it says so without saying where. The
// log's promise is that damage is reported with its position, so when an
// Open fails, walDamage reads the WAL files with Pebble's own record reader
// and names the file, the byte offset and the last event before the damage.

// newRecordReader calls record.NewReader, whose log number parameter has a
// type from one of Pebble's internal packages: the type parameter lets the
// compiler name it.
func newRecordReader[N ~uint64](r io.Reader, num uint64, newReader func(io.Reader, N) *record.Reader) *record.Reader {
	return newReader(r, N(num))
}

// walDamage returns a description of the first damaged WAL record in the
// Pebble store in dir, or "" if it finds none.
func walDamage(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	type wal struct {
		num  uint64
		name string
	}
	var wals []wal
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		if num, err := strconv.ParseUint(base, 10, 64); err == nil {
			wals = append(wals, wal{num, e.Name()})
		}
	}
	sort.Slice(wals, func(i, j int) bool { return wals[i].num < wals[j].num })
	var lastSeq uint64
	for i, w := range wals {
		f, err := os.Open(filepath.Join(dir, w.name))
		if err != nil {
			continue
		}
		r := newRecordReader(f, w.num, record.NewReader)
		for {
			off := r.Offset()
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			var data []byte
			if err == nil {
				data, err = io.ReadAll(rec)
			}
			if err != nil {
				f.Close()
				if i == len(wals)-1 && errors.Is(err, record.ErrUnexpectedEOF) {
					return "" // a torn tail, which replay accepts
				}
				return fmt.Sprintf("WAL %s, record at offset %d, after event %d: %v", w.name, off, lastSeq, err)
			}
			br := batchrepr.Read(data)
			for {
				_, key, _, ok, err := br.Next()
				if err != nil || !ok {
					break
				}
				if seq, ok := eventKeySeq(key); ok && seq > lastSeq {
					lastSeq = seq
				}
			}
		}
		f.Close()
	}
	return ""
}

// openError wraps the error of pebble.Open, naming the damaged WAL record
// when there is one.
func openError(dir, pebbleDir string, err error) error {
	if where := walDamage(pebbleDir); where != "" {
		return fmt.Errorf("log: open %s: damaged %s: %w", dir, where, err)
	}
	return fmt.Errorf("log: open %s: %w", dir, err)
}
