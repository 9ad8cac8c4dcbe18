package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/log/maillog"
)

// mailLogs holds the mail log of each module and the sinks behind them: a
// log file or syslog connection configured by several log sections is
// opened once and shared.
type mailLogs struct {
	files   map[string]*maillog.FileSink
	syslogs map[string]*maillog.SyslogSink
	stderr  *maillog.WriterSink
	loggers map[string]*maillog.Logger
	// errOut is where output = stderr goes: smxd's standard error.
	errOut io.Writer
}

// openMailLogs opens the sinks of every log section of c: "smxd" (the
// global log), "qmgr", "smar", "smtpc" and "smtps NAME" (or "smtps").
// Sections with output = stderr write to stderr.
func openMailLogs(c *conf.Config, stderr io.Writer, onError func(error)) (*mailLogs, error) {
	m := &mailLogs{
		files:   map[string]*maillog.FileSink{},
		syslogs: map[string]*maillog.SyslogSink{},
		loggers: map[string]*maillog.Logger{},
		errOut:  stderr,
	}
	add := func(module string, l conf.Log, level int) error {
		sink, err := m.sink(l)
		if err != nil {
			return fmt.Errorf("mail log of %s: %w", module, err)
		}
		m.loggers[module] = maillog.New(maillog.Options{Sink: sink, Ident: l.Ident,
			Level: maillog.Level(level), OnError: onError})
		return nil
	}
	err := add("smxd", c.Log, c.LogLevel)
	if err == nil {
		err = add("qmgr", c.QMGR.Log, c.QMGR.LogLevel)
	}
	if err == nil {
		err = add("smar", c.SMAR.Log, c.SMAR.LogLevel)
	}
	if err == nil {
		err = add("smtpc", c.SMTPC.Log, c.SMTPC.LogLevel)
	}
	for i := 0; err == nil && i < len(c.SMTPS); i++ {
		err = add(smtpsModule(c.SMTPS[i].Name), c.SMTPS[i].Log, c.SMTPS[i].LogLevel)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func smtpsModule(name string) string {
	if name == "" {
		return "smtps"
	}
	return "smtps " + name
}

func (m *mailLogs) sink(l conf.Log) (maillog.Sink, error) {
	switch l.Output {
	case "file":
		if s, ok := m.files[l.File]; ok {
			return s, nil
		}
		s, err := maillog.OpenFileSink(l.File)
		if err != nil {
			return nil, err
		}
		m.files[l.File] = s
		return s, nil
	case "syslog":
		key := l.Facility + "\x00" + l.Ident + "\x00" + strings.Join(l.Options, ",")
		if s, ok := m.syslogs[key]; ok {
			return s, nil
		}
		s, err := maillog.OpenSyslogSink(maillog.SyslogOptions{Facility: l.Facility, Ident: l.Ident, Options: l.Options})
		if err != nil {
			return nil, err
		}
		m.syslogs[key] = s
		return s, nil
	}
	if m.stderr == nil {
		m.stderr = maillog.NewWriterSink(m.errOut)
	}
	return m.stderr, nil
}

// Logger returns the mail log of a module ("smxd", "qmgr", "smar",
// "smtpc", "smtps NAME").
func (m *mailLogs) Logger(module string) *maillog.Logger {
	if l, ok := m.loggers[module]; ok {
		return l
	}
	return maillog.Discard()
}

// Reopen reopens every log file, after a rotation (SIGUSR2).
func (m *mailLogs) Reopen() error {
	var errs []error
	for _, s := range m.files {
		errs = append(errs, s.Reopen())
	}
	return errors.Join(errs...)
}

// Close closes every sink.
func (m *mailLogs) Close() error {
	var errs []error
	for _, s := range m.files {
		errs = append(errs, s.Close())
	}
	for _, s := range m.syslogs {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Chown gives the log files to uid:gid, so that smxd can reopen them
// after it has dropped root.
func (m *mailLogs) Chown(uid, gid int) error {
	var errs []error
	for path := range m.files {
		errs = append(errs, os.Chown(path, uid, gid))
	}
	return errors.Join(errs...)
}
