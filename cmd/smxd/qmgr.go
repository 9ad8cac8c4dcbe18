package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/wire"
	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/replay"
	"github.com/smx-mta/smx/scheduler"
	"github.com/smx-mta/smx/smtp/client"
)

// qmgrProcessID is the process byte of the ss_ta ids QMGR gives the DSNs
// it makes; SMTP servers use their section's id (0, 1, ...).
const qmgrProcessID = 0xFF

// qmgr is the qmgr component: recovery of the queues from the newest
// snapshot and the log, then the scheduler with the SMTP/LMTP client
// (QMGR and SMTPC of the seed).
type qmgr struct {
	d     *daemon
	st    *storage
	q     *projections.Queue
	sched *scheduler.Scheduler

	ctx     context.Context // of Run
	cancel  context.CancelFunc
	done    chan struct{} // closed when Run returned
	stopped chan struct{}
	once    sync.Once

	// snapshotTick and archiveTick drive the periodic work of Run;
	// archiveTick is nil when event_log archive_after is 0, which keeps
	// every event in the live log.
	snapshotTick, archiveTick <-chan time.Time
	stopTickers               []func()
}

func (d *daemon) startQMGR(ctx context.Context) (*qmgr, error) {
	st := d.storage.Load()
	c := d.config()
	ml := d.logs.Logger("qmgr")

	start := time.Now()
	rep, err := replay.Recover(ctx, replay.FromLog(st.log))
	if err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	q := rep.Queue()
	sizes := q.Sizes()
	took := time.Since(start)
	line := ml.Line(maillog.LevelNotice).Func("qmgr_recovery").Uint("snapshot_seq", rep.FromSnapshot).
		Int("events", int64(rep.Applied)).Uint("last_seq", q.Seq()).
		Int("IQDB", int64(sizes.IQDB)).Int("DEFEDB", int64(sizes.DEFEDB)).
		Int("queued", int64(sizes.IQDB+sizes.DEFEDB)).Str("duration", fmt.Sprintf("%.6f", took.Seconds()))
	if rep.AnomalyCount > 0 {
		line = line.Int("anomalies", int64(rep.AnomalyCount))
	}
	line.Write()
	for _, e := range rep.SkippedSnapshots {
		ml.Line(maillog.LevelWarning).Func("qmgr_recovery").Str("skipped_snapshot", e.Error()).Write()
	}
	for _, a := range rep.Anomalies {
		ml.Line(maillog.LevelWarning).Func("qmgr_recovery").Str("anomaly", a.Error()).Write()
	}
	d.debug.Info("recovery", "snapshot_seq", rep.FromSnapshot, "events", rep.Applied, "queued", sizes.IQDB+sizes.DEFEDB, "took", took)
	d.metrics.recoverySeconds.Set(took.Seconds())

	copts, err := wire.ClientOptions(c)
	if err != nil {
		return nil, err
	}
	copts.Logger = d.debug.With("component", "smtpc")
	qc, err := wire.ReadQMGRConf(c.QMGR.Conf)
	if err != nil {
		return nil, err
	}
	opts := wire.SchedulerOptions(c, qc)
	opts.Log = st.Log
	opts.Feed = &scheduler.LogFeed{Log: st.log}
	opts.Resolver = smarResolver{d}
	opts.Client = client.New(copts)
	opts.Content = scheduler.StoreContent{CDB: st.cdb}
	opts.NewTxnID = func() (string, error) {
		id, err := d.serverIDs.Next(qmgrProcessID)
		if err != nil {
			return "", err
		}
		return id.String(), nil
	}
	opts.ClientIDs = d.clientIDs
	opts.MailLog = ml
	opts.Logger = d.debug.With("component", "qmgr")
	opts.DiskFree = diskFreeEvery(c.QueueDirectory, time.Second, time.Now)
	sched, err := scheduler.New(q, opts)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	m := &qmgr{d: d, st: st, q: q, sched: sched, ctx: runCtx, cancel: cancel,
		done: make(chan struct{}), stopped: make(chan struct{})}
	interval := c.QMGR.EventLog.SnapshotInterval
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	var stop func()
	m.snapshotTick, stop = d.newTicker(interval)
	m.stopTickers = append(m.stopTickers, stop)
	if c.QMGR.EventLog.ArchiveAfter > 0 {
		m.archiveTick, stop = d.newTicker(archiveInterval)
		m.stopTickers = append(m.stopTickers, stop)
	}
	d.qmgr.Store(m)
	return m, nil
}

func (m *qmgr) Run() error {
	go m.snapshots()
	err := m.sched.Run(m.ctx)
	close(m.done)
	select {
	case <-m.stopped:
		return nil
	default:
	}
	if err == nil {
		err = errors.New("scheduler stopped")
	}
	return err
}

// Stop stops the scheduler and writes a snapshot of the queues, so that
// the next start replays only what comes after.
func (m *qmgr) Stop(ctx context.Context) error {
	m.once.Do(func() { close(m.stopped) })
	// From now on the SMTP servers and the control socket see no queue
	// manager until a new one starts.
	m.d.qmgr.CompareAndSwap(m, nil)
	// Let the attempts in flight finish with their outcome in the log;
	// what the grace period cuts off is tried again after the restart.
	if err := m.sched.Drain(ctx); err != nil {
		m.d.logs.Logger("qmgr").Line(maillog.LevelWarning).Func("qmgr_stop").
			Str("error", "grace period over with work in flight: it is repeated after the restart").Write()
	}
	m.cancel()
	<-m.done
	// The scheduler is done with the queue: it is ours now. Its feed may
	// not have brought the last events of the attempts that just
	// finished; fold them in, as a replay would, so that the snapshot
	// covers the whole log and the next start replays nothing.
	it := m.st.log.Iter(m.q.Seq() + 1)
	for it.Next() {
		m.q.Apply(it.Event()) // an anomaly is reported by the next recovery's replay
	}
	err := it.Err()
	it.Close()
	if err != nil {
		return fmt.Errorf("catch up before the snapshot at stop: %w", err)
	}
	if err := replay.SaveSnapshot(m.st.log, m.q); err != nil {
		return fmt.Errorf("snapshot at stop: %w", err)
	}
	m.d.snapshotSeq.Store(m.q.Seq())
	m.d.logs.Logger("qmgr").Line(maillog.LevelNotice).Func("qmgr_snapshot").Uint("seq", m.q.Seq()).Str("when", "stop").Write()
	return nil
}

// bind returns a context for a call to the scheduler that ends when ctx
// does or when the scheduler has stopped, so that a caller never waits
// for a scheduler that will not answer.
func (m *qmgr) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// archiveInterval is the time between passes that move the events of
// messages finished longer than event_log archive_after ago into archive
// segments.
const archiveInterval = time.Hour

// snapshots writes a snapshot every snapshot_interval while the scheduler
// runs, and archives every archiveInterval unless archive_after is 0.
func (m *qmgr) snapshots() {
	defer func() {
		for _, stop := range m.stopTickers {
			stop()
		}
	}()
	for {
		select {
		case <-m.done:
			return
		case <-m.archiveTick:
			m.archive()
		case <-m.snapshotTick:
			var buf bytes.Buffer
			seq, err := m.sched.Snapshot(m.ctx, &buf)
			if err == nil {
				err = m.st.log.SaveSnapshot(seq, buf.Bytes())
			}
			if err != nil {
				if m.ctx.Err() == nil {
					m.d.debug.Error("periodic snapshot", "err", err)
				}
				continue
			}
			m.d.snapshotSeq.Store(seq)
			m.d.logs.Logger("qmgr").Line(maillog.LevelInfo).Func("qmgr_snapshot").Uint("seq", seq).Int("bytes", int64(buf.Len())).Write()
		}
	}
}

// archive moves the events of messages finished longer than
// archive_after ago out of the live log, and logs the pass.
func (m *qmgr) archive() {
	start := time.Now()
	stats, err := m.st.log.Archive(m.ctx, func(txn string) (time.Time, bool) { return m.sched.Finished(m.ctx, txn) })
	ml := m.d.logs.Logger("qmgr")
	if err != nil {
		if m.ctx.Err() == nil {
			ml.Line(maillog.LevelError).Func("eventlog_archive").Str("error", err.Error()).Write()
		}
		return
	}
	level := maillog.LevelInfo
	if stats.Archived > 0 {
		level = maillog.LevelNotice
	}
	ml.Line(level).Func("eventlog_archive").Int("scanned", int64(stats.Scanned)).
		Int("archived", int64(stats.Archived)).Int("segments", int64(len(stats.Segments))).
		Str("duration", fmt.Sprintf("%.3f", time.Since(start).Seconds())).Write()
}

// diskFreeEvery returns the scheduler's DiskFree: the free bytes of the
// file system that holds path, asked of the kernel at most once per
// interval. The scheduler asks at each step of its loop, which under load
// is thousands of times a second: statfs(2) took 1.2% of smxd's CPU time
// in the relay benchmark (docs/performance.md), for a figure that
// changes slowly (the content store checks its own space the same way).
func diskFreeEvery(path string, interval time.Duration, now func() time.Time) func() (int64, error) {
	var mu sync.Mutex
	var checked time.Time
	var free int64
	var err error
	return func() (int64, error) {
		mu.Lock()
		defer mu.Unlock()
		if t := now(); checked.IsZero() || t.Sub(checked) >= interval || t.Before(checked) {
			free, _, err = diskSpace(path)
			checked = t
		}
		return free, err
	}
}

// diskSpace returns the free (for unprivileged users) and total bytes of
// the file system that holds path.
func diskSpace(path string) (free, total int64, err error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(path, &s); err != nil {
		return 0, 0, err
	}
	return int64(s.Bavail) * int64(s.Bsize), int64(s.Blocks) * int64(s.Bsize), nil
}
