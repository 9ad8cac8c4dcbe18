package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/buildinfo"
	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/cmd/smxd/control"
	"github.com/smx-mta/smx/cmd/smxd/supervisor"
	"github.com/smx-mta/smx/cmd/smxd/wire"
	"github.com/smx-mta/smx/log/ids"
	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/smtp/policy/greylist"
	"github.com/smx-mta/smx/smtp/server"
)

// daemon is smxd, the seed's MCP: it owns the configuration, the sockets
// it binds as root, the mail logs, the id counters and the metrics; it
// builds the components from the configuration and has the supervisor
// start them in order, restart them and stop them.
//
// Components reach each other only through the daemon's current
// generations (storage, smar, qmgr), so that one can be replaced by a
// restart or a reload while the others run on.
type daemon struct {
	cfg       atomic.Pointer[conf.Config] // the running configuration; see config
	debug     *slog.Logger
	allowRoot bool

	acct      account
	logs      *mailLogs
	serverIDs *ids.ServerSequence
	clientIDs *ids.ClientGenerator
	conns     *server.ConnLimiter
	metrics   *daemonMetrics
	// greylist is the greylisting database of the smtps sections with
	// the greylisting flag, nil when none has it. It is opened at start
	// and closed at stop, not per SMAR generation: Pebble locks its
	// directory, and a reload must not lose what it knows.
	greylist *greylist.Greylister

	smtpListeners   map[string][]*boundListener // by smtps section name
	controlListener *boundListener
	metricsListener *boundListener

	storage     atomic.Pointer[storage]
	smar        atomic.Pointer[smarState]
	qmgr        atomic.Pointer[qmgr]
	servers     sync.Map // smtps section name -> *server.Server
	snapshotSeq atomic.Uint64

	components []supervisor.Component
	sup        *supervisor.Supervisor
	started    time.Time
	reloadMu   sync.Mutex

	// stderr is where the mail logs with output = stderr go.
	stderr io.Writer
	// newTicker makes the tickers of periodic work (snapshots, archive
	// passes); tests replace it with tickers they drive.
	newTicker func(d time.Duration) (c <-chan time.Time, stop func())
	// now is the clock of the greylisting database; tests drive it.
	now func() time.Time
}

func newDaemon(cfg *conf.Config, debug *slog.Logger, allowRoot bool, stderr io.Writer) *daemon {
	d := &daemon{debug: debug, allowRoot: allowRoot, metrics: newDaemonMetrics(),
		smtpListeners: map[string][]*boundListener{}, stderr: stderr, newTicker: realTicker, now: time.Now}
	d.cfg.Store(cfg)
	return d
}

func realTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// config returns the running configuration: the one smxd started with,
// with the reloadable parts of the last reload.
func (d *daemon) config() *conf.Config { return d.cfg.Load() }

// Start checks permissions, binds the sockets, drops privileges, and
// starts the components in order: storage, smar, qmgr (recovery first),
// the SMTP servers, the control socket and the metrics. It returns once
// smxd serves mail.
func (d *daemon) Start(ctx context.Context) (err error) {
	c := d.config()
	if d.acct, err = lookupAccount(c.User, c.Group); err != nil {
		return err
	}
	if err := checkRoot(d.acct, d.allowRoot); err != nil {
		return err
	}
	if err := d.checkPermissions(c); err != nil {
		return err
	}
	if err := os.MkdirAll(c.QueueDirectory, 0o750); err != nil {
		return fmt.Errorf("queue directory: %w", err)
	}
	defer func() {
		if err != nil {
			d.closeSockets()
			if d.greylist != nil {
				d.greylist.Close()
			}
			if d.logs != nil {
				d.logs.Close()
			}
		}
	}()
	if d.logs, err = openMailLogs(c, d.stderr, func(err error) { d.debug.Error("mail log", "err", err) }); err != nil {
		return err
	}
	if err := d.bindSockets(); err != nil {
		return err
	}
	if os.Geteuid() == 0 && (d.acct.UID >= 0 || d.acct.GID >= 0) {
		if err := d.logs.Chown(d.acct.UID, d.acct.GID); err != nil {
			return fmt.Errorf("hand the mail log to %s: %w", d.acct.Name, err)
		}
	}
	if err := dropPrivileges(d.acct, c.QueueDirectory); err != nil {
		return err
	}
	// From here on smxd runs as its own account: everything below reads
	// or writes mail.
	if d.serverIDs, err = ids.OpenServerSequence(filepath.Join(c.QueueDirectory, ids.FileName), ids.SequenceOptions{}); err != nil {
		return err
	}
	d.clientIDs = ids.NewClientGenerator(0, 0)
	if wire.NeedsGreylisting(c) {
		o := wire.GreylistOptions(c)
		o.Now, o.Logger = d.now, d.debug.With("component", "greylist")
		if d.greylist, err = greylist.Open(o); err != nil {
			return err
		}
	}
	qc, err := wire.ReadQMGRConf(c.QMGR.Conf)
	if err != nil {
		return err
	}
	d.conns = server.NewConnLimiter(wire.ConnLimiterOptions(c, qc))
	d.started = time.Now()
	d.components = d.describeComponents()
	d.sup, err = supervisor.New(d.components, supervisor.Options{
		OnEvent: d.supervisorEvent,
		Logger:  d.debug.With("component", "supervisor"),
	})
	if err != nil {
		return err
	}
	d.registerCollectors()
	if err := d.sup.Start(ctx); err != nil {
		return err
	}

	var listeners []string
	for _, s := range c.SMTPS {
		for _, b := range d.smtpListeners[s.Name] {
			listeners = append(listeners, b.name)
		}
	}
	config := c.File
	if config == "" {
		config = conf.DefaultName
	}
	line := d.logs.Logger("smxd").Line(maillog.LevelNotice).Func("smxd_start").
		Str("version", buildinfo.Version()).Int("pid", int64(os.Getpid())).
		Str("config", config).Str("queue_directory", c.QueueDirectory).
		Str("hostname", c.Hostname).Str("smtps", strings.Join(listeners, " ")).
		Str("control_socket", c.QMGR.ControlSocket)
	if d.metricsListener != nil {
		line = line.Str("metrics", d.metricsListener.ln.Addr().String())
	}
	line.Str("user", userName(os.Geteuid())).Write()
	d.debug.Info("smxd started", "config", config, "queue_directory", c.QueueDirectory,
		"smtps", strings.Join(listeners, " "), "control_socket", c.QMGR.ControlSocket)
	return nil
}

// describeComponents lists the supervised components with their order and
// restart dependencies. The storage holds the event log and the CDB, which
// the queue manager and the SMTP servers hold in turn, so they restart
// with it. SMAR and the queue manager are reached
// through the daemon's current generation, so nothing restarts with them.
func (d *daemon) describeComponents() []supervisor.Component {
	var smtpsNames []string
	for _, s := range d.config().SMTPS {
		smtpsNames = append(smtpsNames, smtpsModule(s.Name))
	}
	comps := []supervisor.Component{
		{Name: "storage", RestartDependencies: append([]string{"qmgr"}, smtpsNames...),
			Start: func(ctx context.Context) (supervisor.Service, error) { return d.startStorage(ctx) }},
		{Name: "smar",
			Start: func(ctx context.Context) (supervisor.Service, error) { return d.startSMAR(ctx) }},
		{Name: "qmgr", Requires: []string{"storage", "smar"},
			Start: func(ctx context.Context) (supervisor.Service, error) { return d.startQMGR(ctx) }},
	}
	for i := range d.config().SMTPS {
		section := &d.config().SMTPS[i]
		comps = append(comps, supervisor.Component{Name: smtpsModule(section.Name), Requires: []string{"storage", "smar", "qmgr"},
			Start: func(ctx context.Context) (supervisor.Service, error) { return d.startSMTPS(ctx, section) }})
	}
	comps = append(comps,
		supervisor.Component{Name: "control", Requires: []string{"qmgr"},
			Start: func(ctx context.Context) (supervisor.Service, error) { return d.startControl(ctx) }},
		supervisor.Component{Name: "metrics",
			Start: func(ctx context.Context) (supervisor.Service, error) { return d.startMetrics(ctx) }},
	)
	return comps
}

// supervisorEvent writes the supervisor's failures and restarts to the
// mail log.
func (d *daemon) supervisorEvent(e supervisor.Event) {
	ml := d.logs.Logger("smxd")
	switch e.Kind {
	case "failed", "restart_failed":
		ml.Line(maillog.LevelError).Func("component_"+e.Kind).Str("component", e.Component).
			Str("error", e.Err.Error()).Str("restart_in", e.Backoff.String()).Write()
	case "restarting":
		ml.Line(maillog.LevelNotice).Func("component_restart").Str("component", e.Component).
			Str("with", strings.Join(e.With, ";")).Write()
	case "restarted":
		d.metrics.restarts.With(e.Component).Inc()
	}
}

// checkPermissions refuses data directories, map files and the
// configuration file that others than root and smxd's account can write.
func (d *daemon) checkPermissions(c *conf.Config) error {
	uid, gid := d.acct.effective()
	type item struct{ path, what string }
	dirs := []item{
		{c.QueueDirectory, "queue directory"},
		{c.QMGR.EventLog.Directory, "event log directory"},
		{wire.CDBDirectory(c), "CDB directory"},
	}
	if c.QMGR.EventLog.ArchiveDirectory != "" {
		dirs = append(dirs, item{c.QMGR.EventLog.ArchiveDirectory, "event log archive directory"})
	}
	for _, it := range dirs {
		if err := checkSafe(it.path, it.what, uid, gid); err != nil {
			return err
		}
	}
	var files []item
	if c.File != "" {
		files = append(files, item{c.File, "configuration file"})
	}
	specs, _, err := wire.MapSpecs(c, wire.NeedsAccessMap(c))
	if err != nil {
		return err
	}
	for _, s := range specs {
		if s.File != "" {
			files = append(files, item{s.File, "map " + s.Name})
		}
	}
	if c.QMGR.Conf != "" {
		files = append(files, item{c.QMGR.Conf, "qmgr conf map"})
	}
	for _, s := range c.SMTPS {
		if s.Auth.File != "" {
			files = append(files, item{s.Auth.File, smtpsModule(s.Name) + " auth file"})
		}
	}
	for _, it := range files {
		if err := checkSafeFile(it.path, it.what, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// bindSockets binds the SMTP listeners, the control socket and the
// metrics listener while smxd may still have the privileges to.
func (d *daemon) bindSockets() error {
	c := d.config()
	for i := range c.SMTPS {
		s := &c.SMTPS[i]
		ls, err := bindSMTP(s)
		if err != nil {
			return err
		}
		for _, b := range ls {
			b.conns = d.metrics.connections.With(s.Name)
		}
		d.smtpListeners[s.Name] = ls
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid = d.acct.UID, d.acct.GID
	}
	cl, err := control.Listen(c.QMGR.ControlSocket, uid, gid)
	if err != nil {
		return err
	}
	d.controlListener = &boundListener{name: "control[" + c.QMGR.ControlSocket + "]", ln: cl}
	addr, err := c.MetricsAddress()
	if err != nil {
		return err
	}
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		d.metricsListener = &boundListener{name: "metrics[" + addr + "]", ln: ln.(*net.TCPListener)}
	}
	return nil
}

func (d *daemon) allListeners() []*boundListener {
	var out []*boundListener
	for _, s := range d.config().SMTPS {
		out = append(out, d.smtpListeners[s.Name]...)
	}
	if d.controlListener != nil {
		out = append(out, d.controlListener)
	}
	if d.metricsListener != nil {
		out = append(out, d.metricsListener)
	}
	return out
}

func (d *daemon) closeSockets() {
	for _, b := range d.allListeners() {
		b.Close()
	}
}

// Reopen reopens the log files (SIGUSR2).
func (d *daemon) Reopen() error {
	d.debug.Info("reopening log files")
	return d.logs.Reopen()
}

// Stop stops the components in reverse order (the SMTP servers first,
// letting their sessions finish; then the queue manager, which writes a
// snapshot), closes the sockets and the logs. ctx bounds the grace period.
func (d *daemon) Stop(ctx context.Context) error {
	start := time.Now()
	for _, b := range d.allListeners() {
		b.final.Store(true)
	}
	d.sup.Stop(ctx)
	d.closeSockets()
	var errs []error
	if d.greylist != nil {
		// The SMTP servers are stopped: no session checks it any more.
		errs = append(errs, d.greylist.Close())
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("grace period over after %v: %w", time.Since(start).Round(time.Millisecond), err))
	}
	d.logs.Logger("smxd").Line(maillog.LevelNotice).Func("smxd_stop").
		Seconds("uptime", time.Since(d.started)).Write()
	d.debug.Info("smxd stopped")
	errs = append(errs, d.logs.Close())
	return errors.Join(errs...)
}
