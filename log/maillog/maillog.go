// Package maillog writes the mail log: the lines a postmaster greps to
// follow every session, transaction, recipient and delivery attempt. The
// format is the seed's (sendmail X "Logfile Format"): comma-separated
// name=value fields, where a text value from an untrusted source has every
// non-printable character, comma and percent sign written as %XX, e.g.
//
//	ss_sess=S00000000407EAE3800, ss_ta=S00000000407EAE4E00, rcpt=<a@b.example>, idx=0, stat=0
//
// A Logger is a value built with its Sink (a file reopened for rotation,
// stderr, or syslog) and its log_level; there is no package-level logger.
// Lines are built with a Line, which appends to a pooled buffer so that
// the hot path neither formats with fmt nor allocates.
//
// The mail log is not the debug log: debug logging stays with log/slog.
// Handler adapts a Logger to slog.Handler for the few callers that prefer
// slog's API for mail log lines.
//
// The package owns only the files and syslog connections it is given; it
// never reads the configuration and never touches the event log.
package maillog

import (
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Level is the importance of a line, compared with the log_level option:
// a line is written when its level is at most the logger's log_level. As
// in the seed, larger values mean more detail; 9 suits normal operation
// and 12 to 14 testing.
type Level int

// The levels lines are written at.
const (
	LevelCrit    Level = 1  // smx cannot go on as configured (sev=CRIT)
	LevelError   Level = 2  // a failure the postmaster must act on (sev=ERR)
	LevelWarning Level = 4  // something is wrong but mail flows (sev=WARN)
	LevelNotice  Level = 6  // start, stop, reload, configuration
	LevelInfo    Level = 8  // one line per session, transaction, recipient, attempt
	LevelDetail  Level = 11 // protocol detail: replies of every command
	LevelDebug   Level = 13 // everything

	// DefaultLevel is the log_level used when none is configured (the
	// seed's recommendation for normal operation).
	DefaultLevel Level = 9
)

// severity returns the sev= value written for lines at level l, or "" for
// lines that carry none. The names let a postmaster run the seed's
// egrep 'sev=(ALERT|CRIT|ERR|FAIL)'.
func (l Level) severity() string {
	switch {
	case l <= LevelCrit:
		return "CRIT"
	case l <= LevelError:
		return "ERR"
	case l <= LevelWarning:
		return "WARN"
	}
	return ""
}

// Entry is one finished line, as handed to a Sink.
type Entry struct {
	Time   time.Time
	Level  Level
	Ident  string // the logger's ident, e.g. "smx-MTA"
	Fields []byte // the rendered fields, without a trailing newline
}

// Sink receives finished lines. WriteLine must not keep e.Fields after it
// returns, and must be safe for concurrent use.
type Sink interface {
	WriteLine(e Entry) error
}

// Options configure a Logger.
type Options struct {
	// Sink receives the lines (required).
	Sink Sink
	// Ident names the component in every line, like openlog(3)'s ident
	// (the log section's ident option). Syslog sinks use their own.
	Ident string
	// Level is the log_level option; 0 means DefaultLevel.
	Level Level
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnError is called when the sink fails to write a line (default:
	// the error is dropped; the daemon passes its debug logger here).
	OnError func(error)
}

// Logger writes mail log lines to its sink. It is safe for concurrent use.
type Logger struct {
	sink    Sink
	ident   string
	level   Level
	now     func() time.Time
	onError func(error)
	pool    sync.Pool
}

// New returns a Logger. A nil Sink makes a logger that writes nothing.
func New(opts Options) *Logger {
	if opts.Level == 0 {
		opts.Level = DefaultLevel
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Logger{sink: opts.Sink, ident: opts.Ident, level: opts.Level, now: opts.Now, onError: opts.OnError}
	l.pool.New = func() any { return &Line{buf: make([]byte, 0, 256)} }
	return l
}

// Discard returns a Logger that writes nothing, for tests and for
// components built without a mail log.
func Discard() *Logger { return New(Options{}) }

// Enabled reports whether lines at level are written.
func (l *Logger) Enabled(level Level) bool {
	return l != nil && l.sink != nil && level <= l.level
}

// Line starts a line at level. It returns nil when the level is not
// enabled; every method of a nil *Line does nothing, so callers write
//
//	lg.Line(maillog.LevelInfo).SSSess(sess).Str("where", "connection").Write()
//
// without checking.
func (l *Logger) Line(level Level) *Line {
	if !l.Enabled(level) {
		return nil
	}
	ln := l.pool.Get().(*Line)
	ln.logger = l
	ln.level = level
	ln.buf = ln.buf[:0]
	if sev := level.severity(); sev != "" {
		ln.buf = append(ln.buf, "sev="...)
		ln.buf = append(ln.buf, sev...)
	}
	return ln
}

// Line is a mail log line being built. Methods append one field each and
// return the line; Write finishes it. A Line must not be used after Write.
type Line struct {
	logger *Logger
	level  Level
	buf    []byte
}

func (ln *Line) name(name string) {
	if len(ln.buf) > 0 {
		ln.buf = append(ln.buf, ", "...)
	}
	ln.buf = append(ln.buf, name...)
	ln.buf = append(ln.buf, '=')
}

// Str appends name=value with value escaped (every string is escaped: a
// trusted one simply has nothing to escape).
func (ln *Line) Str(name, value string) *Line {
	if ln == nil {
		return nil
	}
	ln.name(name)
	ln.buf = AppendEscaped(ln.buf, value)
	return ln
}

// Bytes appends name=value with value escaped.
func (ln *Line) Bytes(name string, value []byte) *Line {
	if ln == nil {
		return nil
	}
	ln.name(name)
	ln.buf = appendEscapedBytes(ln.buf, value)
	return ln
}

// Int appends name=value in decimal.
func (ln *Line) Int(name string, value int64) *Line {
	if ln == nil {
		return nil
	}
	ln.name(name)
	ln.buf = strconv.AppendInt(ln.buf, value, 10)
	return ln
}

// Uint appends name=value in decimal.
func (ln *Line) Uint(name string, value uint64) *Line {
	if ln == nil {
		return nil
	}
	ln.name(name)
	ln.buf = strconv.AppendUint(ln.buf, value, 10)
	return ln
}

// Bool appends name=1 or name=0.
func (ln *Line) Bool(name string, value bool) *Line {
	if ln == nil {
		return nil
	}
	ln.name(name)
	if value {
		ln.buf = append(ln.buf, '1')
	} else {
		ln.buf = append(ln.buf, '0')
	}
	return ln
}

// Seconds appends name=N with d in whole seconds, rounded down, as the
// seed writes delay= and xdelay=.
func (ln *Line) Seconds(name string, d time.Duration) *Line {
	if ln == nil {
		return nil
	}
	ln.name(name)
	ln.buf = strconv.AppendInt(ln.buf, int64(d/time.Second), 10)
	return ln
}

// Addr appends name=address (unspecified addresses are written as "").
func (ln *Line) Addr(name string, addr netip.Addr) *Line {
	if ln == nil {
		return nil
	}
	ln.name(name)
	if addr.IsValid() {
		ln.buf = addr.AppendTo(ln.buf)
	}
	return ln
}

// Write finishes the line and hands it to the sink.
func (ln *Line) Write() {
	if ln == nil {
		return
	}
	l := ln.logger
	err := l.sink.WriteLine(Entry{Time: l.now(), Level: ln.level, Ident: l.ident, Fields: ln.buf})
	if err != nil && l.onError != nil {
		l.onError(err)
	}
	if cap(ln.buf) <= 64<<10 { // do not pool the buffers of huge lines
		ln.logger = nil
		l.pool.Put(ln)
	}
}

// String returns the fields rendered so far, for tests and debugging.
func (ln *Line) String() string {
	if ln == nil {
		return ""
	}
	return string(ln.buf)
}
