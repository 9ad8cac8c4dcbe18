package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/buildinfo"
	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/cmd/smxd/control"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/smtp/server"
)

// controlService is the control component: the control socket's server
// with the daemon as its handler.
type controlService struct {
	srv *control.Server
	ln  *boundListener
}

func (d *daemon) startControl(ctx context.Context) (*controlService, error) {
	uid := os.Geteuid()
	srv, err := control.NewServer(control.ServerOptions{Handler: control.HandlerFunc(d.handleControl),
		AllowUID: &uid, Logger: d.debug.With("component", "control")})
	if err != nil {
		return nil, err
	}
	return &controlService{srv: srv, ln: d.controlListener}, nil
}

func (s *controlService) Run() error {
	err := s.srv.Serve(s.ln.session())
	if errors.Is(err, control.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *controlService) Stop(ctx context.Context) error { return s.srv.Close(ctx) }

// handleControl carries out one control request. Operator actions are
// written as events with the peer's user name and logged in the mail log.
func (d *daemon) handleControl(ctx context.Context, peer control.Peer, req control.Request) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	who := log.Operator{User: peer.User, Reason: req.Reason}
	rcpt := log.NoRcpt
	if req.Rcpt != nil {
		rcpt = *req.Rcpt
	}
	ml := d.logs.Logger("qmgr")
	logAction := func(action string) {
		line := ml.Line(maillog.LevelNotice).Func("qmgr_ctl").Str("action", action).Str("operator", peer.User).
			Int("pid", int64(peer.PID))
		if req.Txn != "" {
			line = line.SSTa(req.Txn)
		}
		if req.Rcpt != nil {
			line = line.Idx(int(*req.Rcpt))
		}
		if req.Domain != "" {
			line = line.Str("domain", req.Domain)
		}
		if req.Addr != "" {
			line = line.Str("new_rcpt", req.Addr)
		}
		if req.Reason != "" {
			line = line.Str("reason", req.Reason)
		}
		line.Write()
	}
	qm := d.qmgr.Load()
	needQMGR := func() error {
		if qm == nil {
			return errors.New("the queue manager is not running")
		}
		return nil
	}
	action := control.ActionResult{Txn: req.Txn, Rcpt: req.Rcpt, Operator: peer.User}
	switch req.Command {
	case control.CmdStatus:
		return d.status(ctx), nil
	case control.CmdConfig:
		var b strings.Builder
		if err := conf.Dump(&b, d.config()); err != nil {
			return nil, err
		}
		file := d.config().File
		if file == "" {
			file = conf.DefaultName
		}
		return control.ConfigResult{File: file, Text: b.String()}, nil
	case control.CmdReload:
		logAction("reload")
		return d.reload()
	case control.CmdRestart:
		if req.Component == "control" {
			// Its stop would wait for this very request.
			return nil, errors.New("the control socket cannot restart itself; restart smxd instead")
		}
		logAction("restart " + req.Component)
		names, err := d.sup.Restart(ctx, req.Component)
		if err != nil {
			return nil, err
		}
		return control.RestartResult{Restarted: names}, nil
	}
	if err := needQMGR(); err != nil {
		return nil, err
	}
	ctx, unbind := qm.bind(ctx)
	defer unbind()
	s := qm.sched
	var err error
	switch req.Command {
	case control.CmdFlush:
		var n int
		switch {
		case req.Domain != "":
			n, err = s.FlushDomain(ctx, req.Domain, who)
		case req.Txn != "":
			err = s.Requeue(ctx, req.Txn, rcpt, who)
			n = 1
		default:
			n, err = s.FlushAll(ctx, who)
		}
		if err != nil {
			return nil, err
		}
		logAction("flush")
		return control.FlushResult{Requeued: n}, nil
	case control.CmdHold:
		err = s.Hold(ctx, req.Txn, rcpt, who)
	case control.CmdRelease:
		err = s.Release(ctx, req.Txn, rcpt, who)
	case control.CmdDelete:
		err = s.Delete(ctx, req.Txn, rcpt, who)
	case control.CmdRequeue:
		err = s.Requeue(ctx, req.Txn, rcpt, who)
	case control.CmdRedirect:
		err = s.Redirect(ctx, req.Txn, rcpt, req.Addr, who)
	default:
		return nil, fmt.Errorf("unknown command %q", req.Command)
	}
	if err != nil {
		return nil, err
	}
	logAction(req.Command)
	return action, nil
}

// status gathers what smxctl status shows.
func (d *daemon) status(ctx context.Context) control.Status {
	now := time.Now()
	st := control.Status{
		Version: buildinfo.Version(), PID: os.Getpid(), Hostname: d.config().Hostname,
		Started: d.started, UptimeSec: now.Sub(d.started).Seconds(),
		Sessions: map[string]int{}, SnapshotSeq: d.snapshotSeq.Load(), Load: server.LoadNormal.String(),
	}
	if qm := d.qmgr.Load(); qm != nil {
		ls := qm.sched.LoadState()
		st.Queue = control.QueueSizes{IQDB: ls.IQDB, IQDBMax: ls.IQDBMax, AQ: ls.AQ, AQMax: ls.AQMax, DEFEDB: ls.DEFEDB}
		st.Load = d.loadState().String()
		st.LoadReason = ls.Reason
	}
	d.servers.Range(func(k, v any) bool {
		st.Sessions[k.(string)] = v.(*server.Server).Sessions()
		return true
	})
	if s := d.storage.Load(); s != nil {
		st.LastSeq = s.log.LastSeq()
	}
	st.Rates.Received1m, st.Rates.Delivered1m = d.metrics.rates.perMinute(now, 60)
	st.Rates.Received5m, st.Rates.Delivered5m = d.metrics.rates.perMinute(now, 300)
	m := d.metrics
	var conns uint64
	for _, b := range d.allListeners() {
		if b.conns != nil {
			conns += b.conns.Value()
		}
	}
	st.Totals = control.Totals{
		Connections: conns,
		Delivered:   m.outcomes.With("delivered").Value(),
		Deferred:    m.outcomes.With("deferred").Value(),
		Bounced:     m.outcomes.With("failed").Value() + m.outcomes.With("expired").Value(),
	}
	for _, s := range d.config().SMTPS {
		name := s.Name
		if name == "" {
			name = "MTA"
		}
		st.Totals.Transactions += m.transactions.With(name).Value()
	}
	st.Disk.Path = d.config().QueueDirectory
	st.Disk.Free, st.Disk.Total, _ = diskSpace(d.config().QueueDirectory)
	for _, c := range d.sup.States() {
		st.Components = append(st.Components, control.Component{Name: c.Name, Running: c.Running, Since: c.Since,
			Restarts: c.Restarts, LastError: c.LastError})
	}
	return st
}
