package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/buildinfo"
	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/log/ids"
	"github.com/smx-mta/smx/log/maillog"
)

// daemon is smxd's supervisor, the seed's MCP: it owns the configuration,
// the queue directory, the mail logs and the id counter, and it is the one
// place where components are built from the configuration, started in
// order and stopped in reverse order.
type daemon struct {
	cfg   *conf.Config
	debug *slog.Logger
	now   func() time.Time

	logs      *mailLogs
	serverIDs *ids.ServerSequence
	started   time.Time
}

func newDaemon(cfg *conf.Config, debug *slog.Logger) *daemon {
	return &daemon{cfg: cfg, debug: debug, now: time.Now}
}

// Start prepares the queue directory, opens the mail logs and the id
// counter, and starts the components. It returns once smxd is running;
// the components run until Stop.
func (d *daemon) Start(ctx context.Context) error {
	c := d.cfg
	if err := os.MkdirAll(c.QueueDirectory, 0o750); err != nil {
		return fmt.Errorf("queue directory: %w", err)
	}
	logs, err := openMailLogs(c, func(err error) { d.debug.Error("mail log", "err", err) })
	if err != nil {
		return err
	}
	d.logs = logs
	seq, err := ids.OpenServerSequence(filepath.Join(c.QueueDirectory, ids.FileName), ids.SequenceOptions{Now: d.now})
	if err != nil {
		d.logs.Close()
		return err
	}
	d.serverIDs = seq
	if err := dropPrivileges(c.User, c.Group, c.QueueDirectory); err != nil {
		d.logs.Close()
		return err
	}
	d.started = d.now()

	var listeners []string
	for _, s := range c.SMTPS {
		ls, _ := s.Listeners() // validated when the configuration was loaded
		for _, l := range ls {
			name := s.Name
			if name == "" {
				name = "smtps"
			}
			listeners = append(listeners, name+"["+l.String()+"]")
		}
	}
	config := c.File
	if config == "" {
		config = conf.DefaultName
	}
	d.logs.Logger("smxd").Line(maillog.LevelNotice).Func("smxd_start").
		Str("version", buildinfo.Version()).Int("pid", int64(os.Getpid())).
		Str("config", config).Str("queue_directory", c.QueueDirectory).
		Str("hostname", c.Hostname).Str("smtps", strings.Join(listeners, " ")).Write()
	d.debug.Info("smxd started", "config", config, "queue_directory", c.QueueDirectory)
	return nil
}

// Reopen reopens the log files (SIGUSR2).
func (d *daemon) Reopen() error {
	d.debug.Info("reopening log files")
	return d.logs.Reopen()
}

// Stop stops the components in reverse order and closes the logs. ctx
// bounds how long components may take to finish what they are doing.
func (d *daemon) Stop(ctx context.Context) error {
	var errs []error
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	d.logs.Logger("smxd").Line(maillog.LevelNotice).Func("smxd_stop").
		Seconds("uptime", d.now().Sub(d.started)).Write()
	d.debug.Info("smxd stopped")
	errs = append(errs, d.logs.Close())
	return errors.Join(errs...)
}
