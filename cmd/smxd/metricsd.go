package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/metrics"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/smtp/server"
)

// daemonMetrics are smxd's metrics (docs/operations.md lists them). The
// counts of mail are counted from the events as they are appended, once
// they are durable; connections are counted at accept, and the latencies
// of appends and CDB commits where they are made.
type daemonMetrics struct {
	reg *metrics.Registry

	connections     *metrics.CounterVec // by listener
	transactions    *metrics.CounterVec // by listener
	rcptsReceived   *metrics.Counter
	outcomes        *metrics.CounterVec // recipients by outcome
	attempts        *metrics.CounterVec // delivery transactions by result
	attemptTime     *metrics.Histogram
	deliveryDelay   *metrics.Histogram // received to delivered
	appendSeconds   *metrics.Histogram
	commitSeconds   *metrics.Histogram
	events          *metrics.CounterVec // by type
	restarts        *metrics.CounterVec // components by name
	recoverySeconds *metrics.Gauge

	rates rates

	// received holds the final-dot time of the messages received since
	// smxd started and not yet released, for deliveryDelay.
	receivedMu sync.Mutex
	received   map[string]time.Time
}

// latencyBuckets cover 100µs to about 100s.
var latencyBuckets = metrics.ExponentialBuckets(0.0001, 2, 21)

// delayBuckets cover one second to about three days.
var delayBuckets = []float64{1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 3 * 24 * 3600}

func newDaemonMetrics() *daemonMetrics {
	r := metrics.NewRegistry()
	return &daemonMetrics{
		reg:             r,
		received:        map[string]time.Time{},
		connections:     r.Counter("smx_smtp_connections_total", "SMTP connections accepted, by smtps listener.", "listener"),
		transactions:    r.Counter("smx_transactions_received_total", "Mail transactions received and made durable (TxnReceived), by smtps section (qmgr-dsn for DSNs).", "listener"),
		rcptsReceived:   r.Counter("smx_recipients_received_total", "Recipients of the transactions received.").With(),
		outcomes:        r.Counter("smx_recipients_total", "Recipient outcomes: delivered, deferred (each deferral), failed, expired, deleted, redirected.", "outcome"),
		attempts:        r.Counter("smx_delivery_attempts_total", "Delivery transactions finished, by the class of the reply that decided them (2xx, 4xx, 5xx, or none when no server answered).", "result"),
		attemptTime:     r.Histogram("smx_delivery_attempt_seconds", "Duration of delivery transactions (connection or RSET to final reply).", latencyBuckets).With(),
		deliveryDelay:   r.Histogram("smx_delivery_delay_seconds", "Time from the final dot to delivery, for messages received since smxd started.", delayBuckets).With(),
		appendSeconds:   r.Histogram("smx_eventlog_append_seconds", "Event log appends until durable: the group commit wait and the fsync.", latencyBuckets).With(),
		commitSeconds:   r.Histogram("smx_cdb_commit_seconds", "CDB body commits until durable (fdatasync), as the SMTP servers see them.", latencyBuckets).With(),
		events:          r.Counter("smx_events_appended_total", "Events appended to the event log, by type.", "type"),
		restarts:        r.Counter("smx_component_restarts_total", "Restarts of supervised components.", "component"),
		recoverySeconds: r.Gauge("smx_recovery_seconds", "Duration of the last recovery of the queues (snapshot and log tail).").With(),
	}
}

// registerCollectors adds the families whose values are read when the
// metrics are scraped: queue sizes, sessions, per-destination
// concurrency, disk space, the CDB's syncs and the component states.
func (d *daemon) registerCollectors() {
	r := d.metrics.reg
	r.Collect("smx_up", "1 while smxd runs.", "gauge", nil, func() []metrics.Sample {
		return []metrics.Sample{{Value: 1}}
	})
	r.Collect("smx_start_time_seconds", "When smxd started, in seconds since the Unix epoch.", "gauge", nil, func() []metrics.Sample {
		return []metrics.Sample{{Value: float64(d.started.UnixNano()) / 1e9}}
	})
	r.Collect("smx_queue_recipients", "Recipients in IQDB, AQ and DEFEDB.", "gauge", []string{"queue"}, func() []metrics.Sample {
		m := d.qmgr.Load()
		if m == nil {
			return nil
		}
		ls := m.sched.LoadState()
		return []metrics.Sample{
			{Labels: []string{"IQDB"}, Value: float64(ls.IQDB)},
			{Labels: []string{"AQ"}, Value: float64(ls.AQ)},
			{Labels: []string{"DEFEDB"}, Value: float64(ls.DEFEDB)},
		}
	})
	r.Collect("smx_load_state", "The load state the SMTP servers act on: 0 normal, 1 slow, 2 refuse.", "gauge", nil, func() []metrics.Sample {
		return []metrics.Sample{{Value: float64(d.loadState())}}
	})
	r.Collect("smx_smtp_sessions", "Open SMTP sessions, by smtps section.", "gauge", []string{"listener"}, func() []metrics.Sample {
		var out []metrics.Sample
		for _, s := range d.config().SMTPS {
			if v, ok := d.servers.Load(s.Name); ok {
				out = append(out, metrics.Sample{Labels: []string{s.Name}, Value: float64(v.(*server.Server).Sessions())})
			}
		}
		return out
	})
	r.Collect("smx_destination_connections", "Outgoing connections per destination IP: open (busy and idle), busy, and the slow start window and its maximum.", "gauge",
		[]string{"destination", "state"}, func() []metrics.Sample {
			m := d.qmgr.Load()
			if m == nil {
				return nil
			}
			ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
			defer cancel()
			states, err := m.sched.ConnStates(ctx)
			if err != nil {
				return nil
			}
			var out []metrics.Sample
			for _, c := range states {
				out = append(out,
					metrics.Sample{Labels: []string{c.Key, "open"}, Value: float64(c.Open)},
					metrics.Sample{Labels: []string{c.Key, "busy"}, Value: float64(c.Busy)},
					metrics.Sample{Labels: []string{c.Key, "window"}, Value: float64(c.Window)},
					metrics.Sample{Labels: []string{c.Key, "max"}, Value: float64(c.Max)},
					metrics.Sample{Labels: []string{c.Key, "waiting"}, Value: float64(c.Waiting)},
				)
			}
			return out
		})
	r.Collect("smx_disk_free_bytes", "Free bytes for unprivileged users on the queue directory's file system.", "gauge", nil, func() []metrics.Sample {
		free, _, err := diskSpace(d.config().QueueDirectory)
		if err != nil {
			return nil
		}
		return []metrics.Sample{{Value: float64(free)}}
	})
	r.Collect("smx_cdb_syncs_total", "fdatasync and fsync calls of the CDB since the storage started.", "counter", nil, func() []metrics.Sample {
		st := d.storage.Load()
		if st == nil {
			return nil
		}
		return []metrics.Sample{{Value: float64(st.cdb.Stats().Syncs)}}
	})
	r.Collect("smx_eventlog_wal_syncs_total", "Syncs of the event log's write-ahead log since the storage started: one per group of appends (group commit), so far fewer than the appends under load.", "counter", nil, func() []metrics.Sample {
		st := d.storage.Load()
		if st == nil {
			return nil
		}
		return []metrics.Sample{{Value: float64(st.log.Stats().WALSyncs)}}
	})
	r.Collect("smx_eventlog_wal_sync_seconds_total", "Time spent in those syncs, summed: divided by smx_eventlog_wal_syncs_total, the mean fsync latency of the event log.", "counter", nil, func() []metrics.Sample {
		st := d.storage.Load()
		if st == nil {
			return nil
		}
		return []metrics.Sample{{Value: st.log.Stats().WALSyncTime.Seconds()}}
	})
	r.Collect("smx_eventlog_last_seq", "Sequence number of the last durable event.", "gauge", nil, func() []metrics.Sample {
		st := d.storage.Load()
		if st == nil {
			return nil
		}
		return []metrics.Sample{{Value: float64(st.log.LastSeq())}}
	})
	r.Collect("smx_component_up", "1 for each supervised component that runs, 0 while it waits for a restart.", "gauge", []string{"component"}, func() []metrics.Sample {
		var out []metrics.Sample
		for _, c := range d.sup.States() {
			v := 0.0
			if c.Running {
				v = 1
			}
			out = append(out, metrics.Sample{Labels: []string{c.Name}, Value: v})
		}
		return out
	})
}

// rates keeps per-second counts of received and delivered messages for
// the last five minutes, for smxctl status.
type rates struct {
	mu      sync.Mutex
	buckets [300]rateBucket
}

type rateBucket struct {
	sec                 int64
	received, delivered uint64
}

func (r *rates) add(now time.Time, received, delivered uint64) {
	sec := now.Unix()
	r.mu.Lock()
	b := &r.buckets[sec%int64(len(r.buckets))]
	if b.sec != sec {
		*b = rateBucket{sec: sec}
	}
	b.received += received
	b.delivered += delivered
	r.mu.Unlock()
}

// perMinute returns received and delivered per minute over the last
// window seconds.
func (r *rates) perMinute(now time.Time, window int64) (received, delivered float64) {
	sec := now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.buckets {
		if b.sec > sec-window && b.sec <= sec {
			received += float64(b.received)
			delivered += float64(b.delivered)
		}
	}
	return received * 60 / float64(window), delivered * 60 / float64(window)
}

// countEvents counts events that have just become durable. Every append of
// the SMTP servers and the scheduler goes through the storage's eventLog,
// which calls it once Append has returned, so the counts never run behind
// what the components have logged.
func (m *daemonMetrics) countEvents(events []log.Event) {
	now := time.Now()
	var received, delivered uint64
	for _, ev := range events {
		m.events.With(ev.Type().String()).Inc()
		switch p := ev.Payload.(type) {
		case *log.TxnReceived:
			listener := p.Listener
			if listener == "" {
				listener = "unknown"
			}
			m.transactions.With(listener).Inc()
			m.rcptsReceived.Add(uint64(len(p.Rcpts)))
			if !p.ReceivedAt.IsZero() {
				m.receivedMu.Lock()
				m.received[ev.Txn] = p.ReceivedAt
				m.receivedMu.Unlock()
			}
			received++
		case *log.RcptDelivered:
			m.outcomes.With("delivered").Inc()
			m.receivedMu.Lock()
			at, ok := m.received[ev.Txn]
			m.receivedMu.Unlock()
			if ok {
				m.deliveryDelay.Observe(ev.Time.Sub(at).Seconds())
			}
			delivered++
		case *log.RcptDeferred:
			m.outcomes.With("deferred").Inc()
		case *log.RcptFailed:
			m.outcomes.With("failed").Inc()
		case *log.RcptExpired:
			m.outcomes.With("expired").Inc()
		case *log.Delete:
			m.outcomes.With("deleted").Inc()
		case *log.Redirect:
			m.outcomes.With("redirected").Inc()
		case *log.AttemptFinished:
			result := "none"
			if p.Code >= 200 && p.Code < 600 {
				result = strconv.Itoa(p.Code/100) + "xx"
			}
			m.attempts.With(result).Inc()
			m.attemptTime.Observe(p.Duration.Seconds())
		case *log.ContentReleased:
			m.receivedMu.Lock()
			delete(m.received, ev.Txn)
			m.receivedMu.Unlock()
		}
	}
	if received+delivered > 0 {
		m.rates.add(now, received, delivered)
	}
}

// metricsService is the metrics component: the HTTP listener, when one
// is configured.
type metricsService struct {
	http *http.Server
	ln   *boundListener
	stop chan struct{}
}

func (d *daemon) startMetrics(ctx context.Context) (*metricsService, error) {
	s := &metricsService{ln: d.metricsListener, stop: make(chan struct{})}
	if s.ln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", d.metrics.reg.Handler())
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	return s, nil
}

func (s *metricsService) Run() error {
	if s.http == nil {
		<-s.stop
		return nil
	}
	err := s.http.Serve(s.ln.session())
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *metricsService) Stop(ctx context.Context) error {
	if s.http == nil {
		close(s.stop)
		return nil
	}
	return s.http.Shutdown(ctx)
}
