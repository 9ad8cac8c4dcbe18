package maillog

import (
	"fmt"
	"io"
	"log/syslog"
	"os"
	"strings"
	"sync"
)

// TimeLayout is the time stamp at the start of each line written to a file
// or stream (syslog adds its own).
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// appendLine renders "TIME IDENT: FIELDS\n".
func appendLine(dst []byte, e Entry) []byte {
	dst = e.Time.AppendFormat(dst, TimeLayout)
	dst = append(dst, ' ')
	if e.Ident != "" {
		dst = append(dst, e.Ident...)
		dst = append(dst, ": "...)
	}
	dst = append(dst, e.Fields...)
	return append(dst, '\n')
}

// WriterSink writes lines to an io.Writer such as os.Stderr, each with one
// Write call, prefixed with the time and the ident.
type WriterSink struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriterSink returns a sink writing to w.
func NewWriterSink(w io.Writer) *WriterSink { return &WriterSink{w: w} }

// WriteLine implements Sink.
func (s *WriterSink) WriteLine(e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = appendLine(s.buf[:0], e)
	_, err := s.w.Write(s.buf)
	return err
}

// FileSink appends lines to a file. Reopen closes and reopens it, so that
// a rotation tool can rename the file and signal smxd (SIGUSR2, as in the
// seed) to start a new one.
type FileSink struct {
	path string
	mu   sync.Mutex
	f    *os.File
	buf  []byte
}

// OpenFileSink opens (or creates, mode 0640) the file at path for
// appending.
func OpenFileSink(path string) (*FileSink, error) {
	s := &FileSink{path: path}
	if err := s.Reopen(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path returns the file's path.
func (s *FileSink) Path() string { return s.path }

// Reopen closes the file and opens the path again.
func (s *FileSink) Reopen() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("maillog: open %s: %w", s.path, err)
	}
	s.mu.Lock()
	old := s.f
	s.f = f
	s.mu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			return fmt.Errorf("maillog: close %s: %w", s.path, err)
		}
	}
	return nil
}

// WriteLine implements Sink. Each line is one write(2) on a file opened
// with O_APPEND, so lines from several sinks on one file do not tear.
func (s *FileSink) WriteLine(e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return fmt.Errorf("maillog: write %s: closed", s.path)
	}
	s.buf = appendLine(s.buf[:0], e)
	if _, err := s.f.Write(s.buf); err != nil {
		return fmt.Errorf("maillog: write %s: %w", s.path, err)
	}
	return nil
}

// Close closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// SyslogOptions configure a SyslogSink, from the seed's log { } section.
type SyslogOptions struct {
	// Facility is the syslog facility name: kern, user, mail, daemon, auth,
	// syslog, lpr, news, uucp, cron, authpriv, ftp, local0 ... local7.
	Facility string
	// Ident is openlog(3)'s ident: the tag of every message.
	Ident string
	// Options are openlog(3)'s options without LOG_: pid, ndelay, odelay,
	// cons, nowait, perror. Go's log/syslog always writes the pid and
	// connects at once, so pid, ndelay, odelay, cons and nowait change
	// nothing; perror also copies every line to Stderr.
	Options []string
	// Network and Address select the syslog daemon; empty means the local
	// one (/dev/log). Tests point them at a socket of their own.
	Network, Address string
	// Stderr receives the copies made by perror (default os.Stderr).
	Stderr io.Writer
}

var facilities = map[string]syslog.Priority{
	"kern": syslog.LOG_KERN, "user": syslog.LOG_USER, "mail": syslog.LOG_MAIL,
	"daemon": syslog.LOG_DAEMON, "auth": syslog.LOG_AUTH, "syslog": syslog.LOG_SYSLOG,
	"lpr": syslog.LOG_LPR, "news": syslog.LOG_NEWS, "uucp": syslog.LOG_UUCP,
	"cron": syslog.LOG_CRON, "authpriv": syslog.LOG_AUTHPRIV, "ftp": syslog.LOG_FTP,
	"local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1, "local2": syslog.LOG_LOCAL2,
	"local3": syslog.LOG_LOCAL3, "local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5,
	"local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7,
}

// SyslogOptionNames are the openlog(3) options a log section may list.
var syslogOptionNames = []string{"pid", "ndelay", "odelay", "cons", "nowait", "perror"}

// ParseFacility returns the syslog facility called name (case-insensitive).
func ParseFacility(name string) (syslog.Priority, error) {
	if p, ok := facilities[strings.ToLower(name)]; ok {
		return p, nil
	}
	return 0, fmt.Errorf("maillog: unknown syslog facility %q", name)
}

// CheckSyslogOption reports whether name is an openlog(3) option this
// package accepts.
func CheckSyslogOption(name string) error {
	for _, o := range syslogOptionNames {
		if strings.EqualFold(o, name) {
			return nil
		}
	}
	return fmt.Errorf("maillog: unknown syslog option %q (want one of %s)", name, strings.Join(syslogOptionNames, ", "))
}

// SyslogSink sends lines to syslog with the facility and ident of its
// options, at a priority that follows the line's level.
type SyslogSink struct {
	w      *syslog.Writer
	perror io.Writer
	mu     sync.Mutex
	buf    []byte
}

// OpenSyslogSink connects to syslog.
func OpenSyslogSink(opts SyslogOptions) (*SyslogSink, error) {
	facility := syslog.LOG_MAIL
	if opts.Facility != "" {
		f, err := ParseFacility(opts.Facility)
		if err != nil {
			return nil, err
		}
		facility = f
	}
	s := &SyslogSink{}
	for _, o := range opts.Options {
		if err := CheckSyslogOption(o); err != nil {
			return nil, err
		}
		if strings.EqualFold(o, "perror") {
			s.perror = opts.Stderr
			if s.perror == nil {
				s.perror = os.Stderr
			}
		}
	}
	w, err := syslog.Dial(opts.Network, opts.Address, facility|syslog.LOG_INFO, opts.Ident)
	if err != nil {
		return nil, fmt.Errorf("maillog: connect to syslog: %w", err)
	}
	s.w = w
	return s, nil
}

// WriteLine implements Sink: CRIT, ERR and WARN lines go out at those
// priorities, notices at LOG_NOTICE, the per-message lines at LOG_INFO and
// detail at LOG_DEBUG.
func (s *SyslogSink) WriteLine(e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perror != nil {
		s.buf = appendLine(s.buf[:0], e)
		s.perror.Write(s.buf) //nolint:errcheck // a copy for the operator only
	}
	msg := string(e.Fields)
	var err error
	switch {
	case e.Level <= LevelCrit:
		err = s.w.Crit(msg)
	case e.Level <= LevelError:
		err = s.w.Err(msg)
	case e.Level <= LevelWarning:
		err = s.w.Warning(msg)
	case e.Level <= LevelNotice:
		err = s.w.Notice(msg)
	case e.Level <= LevelInfo || e.Level <= DefaultLevel:
		err = s.w.Info(msg)
	default:
		err = s.w.Debug(msg)
	}
	if err != nil {
		return fmt.Errorf("maillog: syslog: %w", err)
	}
	return nil
}

// Close closes the connection to syslog.
func (s *SyslogSink) Close() error { return s.w.Close() }
