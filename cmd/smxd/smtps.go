package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/smx-mta/smx/cmd/smxd/buildinfo"
	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/cmd/smxd/wire"
	"github.com/smx-mta/smx/smtp/server"
)

// smtps is the component of one smtps section: an SMTP server serving the
// section's listeners, which smxd bound at start.
type smtps struct {
	d         *daemon
	section   *conf.SMTPS
	srv       *server.Server
	listeners []*boundListener
}

func (d *daemon) startSMTPS(ctx context.Context, section *conf.SMTPS) (*smtps, error) {
	st := d.storage.Load()
	opts, err := wire.ServerOptions(d.config(), section)
	if err != nil {
		return nil, err
	}
	opts.Version = "smx " + buildinfo.Version()
	opts.IDs = d.serverIDs.Generator(uint8(section.ID))
	opts.Content = contentStore{server.NewContentStore(st.cdb), d.metrics}
	opts.Log = st.Log
	opts.Policy = d.smtpsPolicy(section.Name)
	opts.MailLog = d.logs.Logger(smtpsModule(section.Name))
	opts.Debug = d.debug.With("component", smtpsModule(section.Name))
	opts.Load = server.LoadFunc(d.loadState)
	opts.Flush = etrn{d}
	opts.Conns = d.conns
	srv, err := server.New(opts)
	if err != nil {
		return nil, err
	}
	s := &smtps{d: d, section: section, srv: srv, listeners: d.smtpListeners[section.Name]}
	d.servers.Store(section.Name, srv)
	return s, nil
}

func (s *smtps) Run() error {
	errs := make(chan error, len(s.listeners))
	for _, b := range s.listeners {
		go func() { errs <- s.srv.Serve(b.session()) }()
	}
	var first error
	for range s.listeners {
		err := <-errs
		if errors.Is(err, server.ErrServerClosed) {
			continue
		}
		if first == nil {
			first = err
			// One listener failing ends the server: the supervisor
			// restarts it on every listener.
			s.srv.Close()
		}
	}
	return first
}

// Stop stops accepting and lets the sessions finish until ctx is done.
func (s *smtps) Stop(ctx context.Context) error {
	s.srv.StopAccepting()
	s.d.debug.Info("stopped accepting", "component", smtpsModule(s.section.Name))
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: sessions still open at the end of the grace period were closed", smtpsModule(s.section.Name))
	}
	return err
}

// loadState turns the scheduler's load report into the SMTP server's
// load level.
func (d *daemon) loadState() server.Load {
	m := d.qmgr.Load()
	if m == nil {
		return server.LoadNormal
	}
	ls := m.sched.LoadState()
	switch {
	case ls.Refuse:
		return server.LoadRefuse
	case ls.Throttle:
		return server.LoadSlow
	}
	return server.LoadNormal
}

// etrn is the SMTP servers' ETRN hook: the scheduler's flush of the
// node, @domain or #queue the client named, the same as smxctl flush.
type etrn struct{ d *daemon }

func (e etrn) Flush(ctx context.Context, arg string) error {
	m := e.d.qmgr.Load()
	if m == nil {
		return errors.New("the queue manager is not running")
	}
	ctx, unbind := m.bind(ctx)
	defer unbind()
	return m.sched.Flush(ctx, arg)
}
