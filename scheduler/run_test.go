package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/scheduler/clock"
	"github.com/smx-mta/smx/smtp/client"
	"github.com/smx-mta/smx/smtp/resolver"
	"github.com/stretchr/testify/require"
)

// sink is a go-smtp server that records what it gets and counts sessions.
type sink struct {
	mu       sync.Mutex
	msgs     []sinkMsg
	sessions atomic.Int32
	refuse   map[string]bool
}

type sinkMsg struct {
	from  string
	rcpts []string
	data  string
}

func (s *sink) NewSession(*gosmtp.Conn) (gosmtp.Session, error) {
	s.sessions.Add(1)
	return &sinkSession{s: s}, nil
}

func (s *sink) messages() []sinkMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkMsg(nil), s.msgs...)
}

type sinkSession struct {
	s   *sink
	cur sinkMsg
}

func (ss *sinkSession) Reset()        { ss.cur = sinkMsg{} }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, _ *gosmtp.MailOptions) error {
	ss.cur = sinkMsg{from: from}
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if ss.s.refuse[to] {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	ss.cur.rcpts = append(ss.cur.rcpts, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.cur.data = string(b)
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.cur)
	ss.s.mu.Unlock()
	return nil
}

func startSink(t *testing.T, s gosmtp.Backend) int {
	srv := gosmtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// loopbackResolver routes every domain to 127.0.0.1 at one port.
type loopbackResolver struct {
	port   int
	mailer string
}

func (r loopbackResolver) Resolve(ctx context.Context, rcpt string) resolver.Result {
	_, domain, _ := strings.Cut(rcpt, "@")
	mailer := r.mailer
	if mailer == "" {
		mailer = log.MailerESMTP
	}
	return resolver.Result{
		Address: rcpt, Mailer: mailer, Port: r.port, Destination: mailer + ":" + domain + ":" + fmt.Sprint(r.port),
		Hops: []resolver.Hop{{Host: "mx." + domain, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}},
	}
}

// waitFor waits, bounded, until cond holds over the log's events.
func waitFor(t *testing.T, l *memLog, what string, cond func([]log.Event) bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		l.mu.Lock()
		evs := append([]log.Event(nil), l.events...)
		ch := l.notify
		l.mu.Unlock()
		if cond(evs) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; %d events", what, len(evs))
		}
	}
}

func count(evs []log.Event, typ log.EventType) int {
	n := 0
	for _, ev := range evs {
		if ev.Type() == typ {
			n++
		}
	}
	return n
}

// TestRunDelivers runs the whole scheduler against a go-smtp server on
// loopback with the real client: messages are delivered over reused
// sessions, a refused recipient bounces, and the bounce is delivered too.
func TestRunDelivers(t *testing.T) {
	s := &sink{refuse: map[string]bool{"nobody@b.test": true}}
	port := startSink(t, s)
	ml := newMemLog(clock.Real{})
	content := newMemContent()
	var maillogBuf strings.Builder
	var mlMu sync.Mutex
	ids := atomic.Int32{}
	sched, err := New(projections.New(), Options{
		Hostname: "mx.smx.test", Log: ml, Feed: ml, Content: content,
		Resolver: loopbackResolver{port: port},
		Client:   client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second}),
		NewTxnID: func() (string, error) { return fmt.Sprintf("D%d", ids.Add(1)), nil },
		MailLog: maillog.New(maillog.Options{Sink: maillog.NewWriterSink(writerFunc(func(p []byte) (int, error) {
			mlMu.Lock()
			defer mlMu.Unlock()
			return maillogBuf.Write(p)
		}))}),
		InitialConnections: 2,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- sched.Run(ctx) }()

	const n = 20
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i)
		ref := content.put(body)
		_, err := ml.Append(ctx, log.Event{Txn: fmt.Sprintf("T%02d", i), Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
			Sender: "alice@a.test", Rcpts: []log.Recipient{{Addr: fmt.Sprintf("u%d@b.test", i)}},
			Content: ref, ContentSize: int64(len(body)), ReceivedAt: time.Now(),
		}})
		require.NoError(t, err)
	}
	waitFor(t, ml, "deliveries", func(evs []log.Event) bool { return count(evs, log.TypeRcptDelivered) == n })
	require.Len(t, s.messages(), n)
	require.Less(t, int(s.sessions.Load()), n, "sessions were not reused")

	// A refused recipient bounces; the bounce goes to alice@a.test.
	ref := content.put("Subject: lost\r\n\r\nlost\r\n")
	_, err = ml.Append(ctx, log.Event{Txn: "TX", Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
		Sender: "alice@a.test", Rcpts: []log.Recipient{{Addr: "nobody@b.test"}}, Content: ref, ReceivedAt: time.Now(),
	}})
	require.NoError(t, err)
	waitFor(t, ml, "the bounce", func(evs []log.Event) bool {
		for _, ev := range evs {
			if ev.Type() == log.TypeRcptDelivered && strings.HasPrefix(ev.Txn, "D") {
				return true
			}
		}
		return false
	})
	var bounce *sinkMsg
	for _, m := range s.messages() {
		if m.from == "" {
			bounce = &m
		}
	}
	require.NotNil(t, bounce)
	require.Equal(t, []string{"alice@a.test"}, bounce.rcpts)
	p, err := parseDSN([]byte(bounce.data))
	require.NoError(t, err)
	require.Equal(t, "failed", p.rcpts[0].Get("Action"))
	require.Equal(t, "5.1.1", p.rcpts[0].Get("Status"))
	require.Equal(t, "message/rfc822", p.returned)

	st := sched.LoadState()
	require.Equal(t, DefaultAQMaxEntries, st.AQMax)
	conns, err := sched.Conns(ctx)
	require.NoError(t, err)
	require.Contains(t, conns, "127.0.0.1 window=")

	// Operator actions go through the log.
	require.ErrorIs(t, sched.Hold(ctx, "nope", log.NoRcpt, log.Operator{User: "root"}), ErrUnknownMessage)

	cancel()
	require.ErrorIs(t, <-runErr, context.Canceled)
	mlMu.Lock()
	logged := maillogBuf.String()
	mlMu.Unlock()
	require.Contains(t, logged, "status=connected")
	require.Contains(t, logged, "where=final_dot")
	require.Contains(t, logged, "rcpt=<nobody@b.test>")
	require.Contains(t, logged, "q_dsn_queued")
}

// closingSink is a sink whose server side connections the test can close,
// as a server does with sessions idle too long.
type closingSink struct {
	*sink
	mu    sync.Mutex
	conns []*gosmtp.Conn
}

func (c *closingSink) NewSession(conn *gosmtp.Conn) (gosmtp.Session, error) {
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	return c.sink.NewSession(conn)
}

func (c *closingSink) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// TestRunReconnectsAfterStaleSession: a cached session the server has
// closed fails the RSET that goes out with the next transaction; the
// message goes over a new session at once, neither deferred nor lost.
func TestRunReconnectsAfterStaleSession(t *testing.T) {
	s := &closingSink{sink: &sink{}}
	port := startSink(t, s)
	ml := newMemLog(clock.Real{})
	content := newMemContent()
	sched, err := New(projections.New(), Options{
		Hostname: "mx.smx.test", Log: ml, Feed: ml, Content: content,
		Resolver: loopbackResolver{port: port},
		Client:   client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second}),
		NewTxnID: func() (string, error) { return "", errors.New("no DSNs here") },
		// One connection at most: the second message waits for the
		// first's session instead of opening another.
		InitialConnections: 1, MaxConnections: 1,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- sched.Run(ctx) }()
	send := func(i int) {
		body := fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i)
		_, err := ml.Append(ctx, log.Event{Txn: fmt.Sprintf("T%02d", i), Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
			Sender: "alice@a.test", Rcpts: []log.Recipient{{Addr: fmt.Sprintf("u%d@b.test", i)}},
			Content: content.put(body), ContentSize: int64(len(body)), ReceivedAt: time.Now(),
		}})
		require.NoError(t, err)
	}
	send(0)
	waitFor(t, ml, "the first delivery", func(evs []log.Event) bool { return count(evs, log.TypeRcptDelivered) == 1 })
	send(1)
	waitFor(t, ml, "the second delivery", func(evs []log.Event) bool { return count(evs, log.TypeRcptDelivered) == 2 })
	require.EqualValues(t, 1, s.sessions.Load(), "the session was reused")
	s.closeAll()
	send(2)
	waitFor(t, ml, "the delivery after the close", func(evs []log.Event) bool { return count(evs, log.TypeRcptDelivered) == 3 })
	require.EqualValues(t, 2, s.sessions.Load(), "a new session replaced the closed one")
	require.Len(t, s.messages(), 3)
	ml.mu.Lock()
	require.Zero(t, count(ml.events, log.TypeRcptDeferred))
	ml.mu.Unlock()
	cancel()
	require.ErrorIs(t, <-runErr, context.Canceled)
}

type clockReal = clock.Real

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestRetryBounds checks that retry times with fuzz stay within
// retry_min_delay and retry_max_delay, grow with the time in queue, and
// never pass the expiry.
func TestRetryBounds(t *testing.T) {
	p := &retryPolicy{min: 5 * time.Minute, max: time.Hour, expiry: 5 * 24 * time.Hour, fuzz: 0.1, rand: newRand(7)}
	received := epoch
	var last time.Duration
	for age := time.Duration(0); age < 6*24*time.Hour; age += 7 * time.Minute {
		now := received.Add(age)
		next, expired := p.next(now, received)
		if age >= p.expiry {
			require.True(t, expired)
			continue
		}
		require.False(t, expired)
		d := next.Sub(now)
		require.GreaterOrEqual(t, d, time.Duration(0))
		if !next.Equal(received.Add(p.expiry)) {
			require.GreaterOrEqual(t, d, p.min, "age %v", age)
			require.LessOrEqual(t, d, p.max, "age %v", age)
		}
		require.False(t, next.After(received.Add(p.expiry)))
		if age > 2*p.max {
			last = max(last, d)
		}
	}
	require.Greater(t, last, 54*time.Minute, "delays do not approach retry_max_delay")
	// The fuzz moves a delay by at most its share, and does move it.
	seen := map[time.Duration]bool{}
	for range 50 {
		d := p.delay(30 * time.Minute)
		require.GreaterOrEqual(t, d, 27*time.Minute)
		require.LessOrEqual(t, d, 33*time.Minute)
		seen[d] = true
	}
	require.Greater(t, len(seen), 10, "the fuzz does not spread the retries")
	// Growth without fuzz: the delay is the age, kept in bounds.
	q := &retryPolicy{min: 5 * time.Minute, max: time.Hour, expiry: 24 * time.Hour}
	require.Equal(t, 5*time.Minute, q.delay(time.Minute))
	require.Equal(t, 20*time.Minute, q.delay(20*time.Minute))
	require.Equal(t, time.Hour, q.delay(3*time.Hour))
}

func TestConnLimits(t *testing.T) {
	o := Options{InitialConnections: 10, MaxConnections: 100, ConnLimits: []ConnLimit{
		{Key: "127.0.0.1", Initial: 5, Max: 10}, {Key: "10", Initial: 10, Max: 50}, {Key: "", Initial: 1, Max: 4},
	}}
	cl, err := newConnLimits(&o)
	require.NoError(t, err)
	for _, tc := range []struct {
		ip       string
		ini, max int
	}{
		{"127.0.0.1", 5, 10}, {"10.1.2.3", 10, 50}, {"192.0.2.1", 1, 4}, {"unix:/sock", 1, 4},
	} {
		i, m := cl.lookup(tc.ip)
		require.Equal(t, tc.ini, i, tc.ip)
		require.Equal(t, tc.max, m, tc.ip)
	}
	_, err = newConnLimits(&Options{ConnLimits: []ConnLimit{{Key: "not an ip"}}})
	require.Error(t, err)
}

func TestNewRequires(t *testing.T) {
	_, err := New(projections.New(), Options{})
	require.Error(t, err)
	require.True(t, errors.Is(err, err))
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }

// fallbackResolver routes every domain to two MX hosts on loopback: the
// first refuses connections (nothing listens on 127.0.0.2), the second is
// the sink.
type fallbackResolver struct{ port int }

func (r fallbackResolver) Resolve(ctx context.Context, rcpt string) resolver.Result {
	_, domain, _ := strings.Cut(rcpt, "@")
	return resolver.Result{
		Address: rcpt, Mailer: log.MailerESMTP, Port: r.port, Destination: "esmtp:" + domain + ":" + fmt.Sprint(r.port),
		Hops: []resolver.Hop{
			{Host: "mx1." + domain, Preference: 10, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.2")}},
			{Host: "mx2." + domain, Preference: 20, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		},
	}
}

// TestRunCountsReachedIP runs the scheduler with the real client over a
// route whose first address refuses connections: the slow start window
// that grows is the one of the address the sessions reached, the first
// address's window shrinks, and the reused sessions count against the
// second address.
func TestRunCountsReachedIP(t *testing.T) {
	s := &sink{}
	port := startSink(t, s)
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.2", fmt.Sprint(port)), time.Second); err == nil {
		c.Close()
		t.Skip("127.0.0.2 accepts connections on the sink's port here")
	}
	ml := newMemLog(clock.Real{})
	content := newMemContent()
	ids := atomic.Int32{}
	sched, err := New(projections.New(), Options{
		Hostname: "mx.smx.test", Log: ml, Feed: ml, Content: content,
		Resolver:           fallbackResolver{port: port},
		Client:             client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second}),
		NewTxnID:           func() (string, error) { return fmt.Sprintf("D%d", ids.Add(1)), nil },
		InitialConnections: 4, MaxConnections: 8,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- sched.Run(ctx) }()

	const n = 10
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i)
		ref := content.put(body)
		_, err := ml.Append(ctx, log.Event{Txn: fmt.Sprintf("T%02d", i), Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
			Sender: "alice@a.test", Rcpts: []log.Recipient{{Addr: fmt.Sprintf("u%d@b.test", i)}},
			Content: ref, ContentSize: int64(len(body)), ReceivedAt: time.Now(),
		}})
		require.NoError(t, err)
	}
	waitFor(t, ml, "deliveries", func(evs []log.Event) bool { return count(evs, log.TypeRcptDelivered) == n })
	waitReported(t, sched)
	states, err := sched.ConnStates(ctx)
	require.NoError(t, err)
	byKey := map[string]ConnState{}
	for _, st := range states {
		byKey[st.Key] = st
	}
	first, second := byKey["127.0.0.2"], byKey["127.0.0.1"]
	require.True(t, first.Unreachable, "%+v", states)
	require.Less(t, first.Window, 4, "%+v", states)
	require.False(t, second.Unreachable, "%+v", states)
	require.Greater(t, second.Window, 4, "the reached address's window did not grow: %+v", states)
	require.Zero(t, first.Open, "%+v", states)
	require.Positive(t, second.Open, "no idle session counted against the reached address: %+v", states)
	for _, ev := range ml.since(0) {
		if p, ok := ev.Payload.(*log.RcptDelivered); ok {
			require.Equal(t, "127.0.0.1", p.IP)
		}
	}
	cancel()
	require.ErrorIs(t, <-runErr, context.Canceled)
}
