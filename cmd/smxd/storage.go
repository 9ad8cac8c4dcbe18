package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/wire"
	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/smtp/server"
)

// storage is the component that owns the event log and the content store
// (CDB). Every other component that writes mail holds them, so they are
// its restart dependencies: after a failed fsync the log refuses every
// further append until it is reopened, which recovers exactly what is
// durable, and the components are rebuilt on the reopened stores.
type storage struct {
	d   *daemon
	log *log.Log
	cdb *content.Store

	// Log is the event log as components use it: appends are timed for
	// the metrics and a failed append that is not a cancellation fails
	// the component.
	Log *eventLog

	failOnce sync.Once
	failed   chan error
	stop     chan struct{}
	stopOnce sync.Once
}

func (d *daemon) startStorage(ctx context.Context) (*storage, error) {
	c := d.config()
	lopts := wire.LogOptions(c)
	lopts.Logger = d.debug.With("component", "eventlog")
	l, err := log.Open(c.QMGR.EventLog.Directory, lopts)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	copts := wire.ContentOptions(c)
	copts.Logger = d.debug.With("component", "cdb")
	cdb, err := content.Open(wire.CDBDirectory(c), copts)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("content store: %w", err)
	}
	st := &storage{d: d, log: l, cdb: cdb, failed: make(chan error, 1), stop: make(chan struct{})}
	st.Log = &eventLog{l: l, st: st, m: d.metrics}
	d.storage.Store(st)
	return st, nil
}

// fail reports a storage failure once; Run returns it and the supervisor
// restarts the storage with its dependents.
func (st *storage) fail(err error) {
	st.failOnce.Do(func() { st.failed <- err })
}

func (st *storage) Run() error {
	select {
	case err := <-st.failed:
		return err
	case <-st.stop:
		return nil
	}
}

func (st *storage) Stop(ctx context.Context) error {
	st.stopOnce.Do(func() { close(st.stop) })
	return errors.Join(st.cdb.Close(), st.log.Close())
}

// eventLog is the event log as the SMTP servers and the scheduler see it.
type eventLog struct {
	l  *log.Log
	st *storage
	m  *daemonMetrics
}

// Append implements server.EventLog and scheduler.EventLog.
func (e *eventLog) Append(ctx context.Context, events ...log.Event) (uint64, error) {
	start := time.Now()
	seq, err := e.l.Append(ctx, events...)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, log.ErrClosed) {
			e.st.fail(fmt.Errorf("event log append: %w", err))
		}
		return seq, err
	}
	e.m.appendSeconds.Observe(time.Since(start).Seconds())
	e.m.countEvents(events)
	return seq, nil
}

// Get implements scheduler.EventLog.
func (e *eventLog) Get(seq uint64) (log.Event, error) { return e.l.Get(seq) }

// contentStore is the CDB as the SMTP servers see it, with commits timed
// for the metrics.
type contentStore struct {
	server.ContentStore
	m *daemonMetrics
}

func (c contentStore) Create(ctx context.Context, txn string, env *server.Envelope) (server.BodyWriter, error) {
	w, err := c.ContentStore.Create(ctx, txn, env)
	if err != nil {
		return nil, err
	}
	return timedBody{w, c.m}, nil
}

type timedBody struct {
	server.BodyWriter
	m *daemonMetrics
}

func (b timedBody) Commit(ctx context.Context) (string, error) {
	start := time.Now()
	ref, err := b.BodyWriter.Commit(ctx)
	if err == nil {
		b.m.commitSeconds.Observe(time.Since(start).Seconds())
	}
	return ref, err
}
