package main

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/metrics"
	"github.com/smx-mta/smx/log"
)

// daemonMetrics are smxd's metrics (docs/operations.md lists them). The
// counts of mail come from the event log itself (the follower below), so
// they say what is durable; connections are counted at accept, and the
// latencies of appends and CDB commits where they are made.
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
}

// latencyBuckets cover 100µs to about 100s.
var latencyBuckets = metrics.ExponentialBuckets(0.0001, 2, 21)

// delayBuckets cover one second to about three days.
var delayBuckets = []float64{1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 3 * 24 * 3600}

func newDaemonMetrics() *daemonMetrics {
	r := metrics.NewRegistry()
	return &daemonMetrics{
		reg:             r,
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

// follower counts the events of the log as they become durable.
type follower struct {
	d        *daemon
	received map[string]time.Time // ss_ta -> final dot, for messages still queued
	sub      *log.Subscription
	cancel   context.CancelFunc
	done     chan struct{}
	http     *http.Server
	httpDone chan error
}

// startMetrics starts the metrics component: the follower from the end
// of the log as it is now, and the HTTP listener when one is configured.
func (d *daemon) startMetrics(ctx context.Context) (*follower, error) {
	st := d.storage.Load()
	fctx, cancel := context.WithCancel(context.Background())
	sub, err := st.log.Subscribe(fctx, st.log.LastSeq()+1)
	if err != nil {
		cancel()
		return nil, err
	}
	f := &follower{d: d, received: map[string]time.Time{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for ev := range sub.Events() {
			f.count(ev)
		}
	}()
	if d.metricsListener != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", d.metrics.reg.Handler())
		f.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		f.httpDone = make(chan error, 1)
		ln := d.metricsListener.session()
		go func() { f.httpDone <- f.http.Serve(ln) }()
	}
	f.sub = sub
	return f, nil
}

func (f *follower) count(ev log.Event) {
	m := f.d.metrics
	m.events.With(ev.Type().String()).Inc()
	now := time.Now()
	switch p := ev.Payload.(type) {
	case *log.TxnReceived:
		listener := p.Listener
		if listener == "" {
			listener = "unknown"
		}
		m.transactions.With(listener).Inc()
		m.rcptsReceived.Add(uint64(len(p.Rcpts)))
		if !p.ReceivedAt.IsZero() {
			f.received[ev.Txn] = p.ReceivedAt
		}
		m.rates.add(now, 1, 0)
	case *log.RcptDelivered:
		m.outcomes.With("delivered").Inc()
		if at, ok := f.received[ev.Txn]; ok {
			m.deliveryDelay.Observe(ev.Time.Sub(at).Seconds())
		}
		m.rates.add(now, 0, 1)
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
			result = string(rune('0'+p.Code/100)) + "xx"
		}
		m.attempts.With(result).Inc()
		m.attemptTime.Observe(p.Duration.Seconds())
	case *log.ContentReleased:
		delete(f.received, ev.Txn)
	}
}

func (f *follower) Run() error {
	var httpErr <-chan error = f.httpDone
	select {
	case <-f.done:
		if err := f.sub.Err(); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	case err := <-httpErr:
		if errors.Is(err, http.ErrServerClosed) {
			<-f.done
			return nil
		}
		f.cancel()
		<-f.done
		return err
	}
}

func (f *follower) Stop(ctx context.Context) error {
	var err error
	if f.http != nil {
		err = f.http.Shutdown(ctx)
	}
	f.cancel()
	<-f.done
	return err
}
