package maps

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// Format is the syntax of a map file.
type Format uint8

// The map file formats.
const (
	// FormatPlain is "key value": the key is the first word of the
	// line, the value the rest of it.
	FormatPlain Format = iota
	// FormatAliases is "key: value", as the seed's aliases examples are
	// written: the key ends at the first colon.
	FormatAliases
)

// maxLine bounds one physical line of a map file.
const maxLine = 1 << 20

// FileError is a syntax error in a map file, with its position.
type FileError struct {
	File string
	Line int // 1-based
	Col  int // 1-based byte column
	Msg  string
}

// Error renders "file:line:col: message".
func (e *FileError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// ParseFile reads a map file. The syntax:
//
//   - Lines end in LF or CRLF. A line whose first non-blank character is
//     '#' is a comment; blank lines are ignored.
//   - A line that starts with a space or tab continues the value of the
//     entry before it; the pieces are joined with one space (as in
//     aliases(5)).
//   - Otherwise the line is an entry. In FormatPlain the key is the first
//     word (up to a space or tab) and the value the rest of the line; in
//     FormatAliases the key is everything before the first ':'. Leading
//     and trailing blanks of the value are dropped; the value may be
//     empty. A '#' inside a value is part of it.
//   - Keys are folded to lower case; values are kept as written. A key
//     given twice is an error, as is a NUL byte or invalid UTF-8.
//
// Errors are *FileError values naming file, line and column.
func ParseFile(r io.Reader, file string, format Format) (map[string]string, error) {
	return parseFile(r, file, format, 0)
}

// parseFile is ParseFile with a hint of the number of entries, so that a
// big map is not rehashed while it grows.
func parseFile(r io.Reader, file string, format Format, sizeHint int) (map[string]string, error) {
	entries := make(map[string]string, sizeHint)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var (
		lineNo  int
		lastKey string
		value   strings.Builder
		pending bool
	)
	flush := func() {
		if pending {
			entries[lastKey] = value.String()
			pending = false
		}
	}
	fail := func(col int, format string, args ...any) error {
		return &FileError{File: file, Line: lineNo, Col: col, Msg: fmt.Sprintf(format, args...)}
	}
	for sc.Scan() {
		lineNo++
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if i := bytes.IndexByte(line, 0); i >= 0 {
			return nil, fail(i+1, "NUL byte")
		}
		if !utf8.Valid(line) {
			return nil, fail(1, "invalid UTF-8")
		}
		trimmed := bytes.TrimLeft(line, " \t")
		if len(trimmed) == 0 || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !pending {
				return nil, fail(1, "continuation line without an entry before it")
			}
			if value.Len() > 0 {
				value.WriteByte(' ')
			}
			value.Write(bytes.TrimRight(trimmed, " \t"))
			continue
		}
		flush()
		var key, rest []byte
		switch format {
		case FormatAliases:
			i := bytes.IndexByte(line, ':')
			if i < 0 {
				return nil, fail(len(line)+1, "missing ':' after the key")
			}
			key, rest = line[:i], line[i+1:]
			if j := bytes.IndexAny(key, " \t"); j >= 0 {
				return nil, fail(j+1, "blank inside the key")
			}
			if len(key) == 0 {
				return nil, fail(1, "empty key")
			}
		default:
			i := bytes.IndexAny(line, " \t")
			if i < 0 {
				i = len(line)
			}
			key, rest = line[:i], line[i:]
		}
		k := Fold(string(key))
		if _, dup := entries[k]; dup {
			return nil, fail(1, "duplicate key %q", k)
		}
		lastKey = k
		value.Reset()
		value.Write(bytes.Trim(rest, " \t"))
		pending = true
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			lineNo++
			return nil, fail(1, "line longer than %d bytes", maxLine)
		}
		return nil, fmt.Errorf("%s: read: %w", file, err)
	}
	flush()
	return entries, nil
}

// ReadFile opens and parses a map file.
func ReadFile(path string, format Format) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("maps: %w", err)
	}
	defer f.Close()
	hint := 0
	if fi, err := f.Stat(); err == nil {
		// About 40 bytes a line in typical maps.
		hint = int(min(fi.Size()/40, 1<<24))
	}
	return parseFile(bufio.NewReaderSize(f, 1<<16), path, format, hint)
}
