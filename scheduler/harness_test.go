package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/mail"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/scheduler/clock"
	"github.com/smx-mta/smx/smtp/client"
	"github.com/smx-mta/smx/smtp/resolver"
)

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// memLog is an in-memory event log for tests: Append assigns Seq and Time.
type memLog struct {
	mu     sync.Mutex
	clk    clock.Clock
	events []log.Event
	// batchEnd[i] is the Seq of the last event of the Append that wrote
	// event i+1: a crash keeps or loses an append as a whole.
	batchEnd []uint64
	notify   chan struct{}
}

func newMemLog(clk clock.Clock) *memLog { return &memLog{clk: clk, notify: make(chan struct{})} }

func (l *memLog) Append(ctx context.Context, events ...log.Event) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range events {
		events[i].Seq = uint64(len(l.events) + 1)
		if events[i].Time.IsZero() {
			events[i].Time = l.clk.Now()
		}
		l.events = append(l.events, events[i])
	}
	for range events {
		l.batchEnd = append(l.batchEnd, uint64(len(l.events)))
	}
	close(l.notify)
	l.notify = make(chan struct{})
	return uint64(len(l.events)), nil
}

func (l *memLog) Get(seq uint64) (log.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq == 0 || seq > uint64(len(l.events)) {
		return log.Event{}, fmt.Errorf("no event %d", seq)
	}
	return l.events[seq-1], nil
}

// Next implements Feed.
func (l *memLog) Next(ctx context.Context, after uint64) ([]log.Event, error) {
	for {
		l.mu.Lock()
		if uint64(len(l.events)) > after {
			out := append([]log.Event(nil), l.events[after:]...)
			l.mu.Unlock()
			return out, nil
		}
		ch := l.notify
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// cutAfter simulates a crash right after the append that holds event seq:
// the log keeps that append whole and loses every later one. It returns
// the last Seq kept.
func (l *memLog) cutAfter(seq uint64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := l.batchEnd[seq-1]
	l.events = l.events[:end]
	l.batchEnd = l.batchEnd[:end]
	return end
}

func (l *memLog) since(seq uint64) []log.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]log.Event(nil), l.events[seq:]...)
}

// memContent is an in-memory content store.
type memContent struct {
	mu       sync.Mutex
	bodies   map[string][]byte
	n        int
	released int
}

func newMemContent() *memContent { return &memContent{bodies: map[string][]byte{}} }

func (m *memContent) put(body string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	ref := fmt.Sprintf("c%d", m.n)
	m.bodies[ref] = []byte(body)
	return ref
}

func (m *memContent) Open(ref string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bodies[ref]
	if !ok {
		return nil, fmt.Errorf("no body %s", ref)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m *memContent) Store(ctx context.Context, txn string, env *log.TxnReceived, write func(io.Writer) error) (string, int64, error) {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return "", 0, err
	}
	ref := m.put(buf.String())
	return ref, int64(buf.Len()), nil
}

// Release marks ref released; the body stays so that stories can print
// the DSNs that were delivered.
func (m *memContent) Release(ref string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.bodies[ref]; !ok {
		return fmt.Errorf("release of unknown body %s", ref)
	}
	m.released++
	return nil
}

func (m *memContent) body(ref string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.bodies[ref])
}

// server is how a scripted destination IP behaves.
type server struct {
	down  bool
	rcpts map[string]client.Reply // per recipient replies; others get 250
	dsn   bool
}

// harness drives the core synchronously with a script: resolutions and
// deliveries are answered at once (or held, to test concurrency), so a
// story runs deterministically on the fake clock.
type harness struct {
	t       *testing.T
	clk     *clock.Fake
	log     *memLog
	content *memContent
	opts    Options
	core    *core
	shell   *Scheduler
	routes  map[string]string // domain -> IP, "fail" or "tempfail"
	aliases map[string][]string
	servers map[string]*server
	hold    bool
	held    []*deliveryJob
	// holdResolves keeps resolutions until the story finishes them
	// (resolved), as hold keeps deliveries.
	holdResolves bool
	heldResolves []*resolveJob
	after        func()
	done         []func()
	applied      uint64
	printed      uint64
	ids          int
	connects     map[string]int // delivery attempts per IP
	// dsnFailures is how many DSN builds are still to fail (the content
	// store refusing them).
	dsnFailures int
	// buffers are the shared allocations of the events fed to the core
	// (decodedLike), for retained.
	buffers []string
	// diskFree is what Options.DiskFree reports; negative: it fails.
	diskFree int64
	// reused counts the transactions per IP that went over a session
	// from the connection cache; closed lists the sessions closed, by IP.
	reused map[string]int
	closed []string
	// maillog holds the mail log lines the scheduler wrote (fields only).
	maillog []string
}

// WriteLine implements maillog.Sink for the harness.
func (h *harness) WriteLine(e maillog.Entry) error {
	h.maillog = append(h.maillog, string(e.Fields))
	return nil
}

func newHarness(t *testing.T, args []datadriven.CmdArg) *harness {
	clk := clock.NewFake(epoch)
	h := &harness{t: t, clk: clk, log: newMemLog(clk), content: newMemContent(),
		routes: map[string]string{}, aliases: map[string][]string{}, servers: map[string]*server{}, connects: map[string]int{},
		diskFree: -1, reused: map[string]int{}}
	h.opts = Options{
		Hostname: "mx.smx.test", Log: h.log, Feed: h.log, Content: h.content, Clock: clk,
		Rand: rand.New(rand.NewPCG(1, 2)), RetryFuzz: -1, NoReuseConnection: true,
		Logger:   slog.New(anomalyFails{t}),
		NewTxnID: func() (string, error) { h.ids++; return fmt.Sprintf("D%d", h.ids), nil },
		DiskFree: func() (int64, error) {
			if h.diskFree < 0 {
				return 0, errors.New("statfs: not known")
			}
			return h.diskFree, nil
		},
	}
	for _, a := range args {
		v := ""
		if len(a.Vals) > 0 {
			v = a.Vals[0]
		}
		dur := func() time.Duration {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("%s: %v", a.Key, err)
			}
			return d
		}
		num := func() int { n, _ := strconv.Atoi(v); return n }
		frac := func() float64 { f, _ := strconv.ParseFloat(v, 64); return f }
		switch a.Key {
		case "aq-max":
			h.opts.AQMaxEntries = num()
		case "reserve":
			h.opts.DeferredReserve = frac()
		case "cap":
			h.opts.DeferredCap = frac()
		case "initial":
			h.opts.InitialConnections = num()
		case "max":
			h.opts.MaxConnections = num()
		case "retry-min":
			h.opts.RetryMinDelay = dur()
		case "retry-max":
			h.opts.RetryMaxDelay = dur()
		case "fuzz":
			h.opts.RetryFuzz = frac()
		case "return":
			h.opts.QueueReturnTimeout = dur()
		case "warn":
			h.opts.QueueDelayTimeout = dur()
		case "merge":
			h.opts.MergeDelayMax = dur()
		case "max-errors":
			h.opts.MaxErrorsPerDSN = num()
		case "header-only":
			h.opts.HeaderOnly = true
		case "iqdb-max":
			h.opts.IQDBMaxEntries = num()
		case "min-disk":
			h.opts.MinDiskSpace = int64(num())
		case "ok-disk":
			h.opts.OKDiskSpace = int64(num())
		case "max-rcpts":
			h.opts.SMTPMaxRcptsPerTransaction = num()
		case "sched-timeout":
			h.opts.SchedulerTimeout = dur()
		case "hold-deliveries":
			h.hold = true
		case "reuse":
			// Sessions stay open for further transactions (the default
			// of smxd; the stories' default is a session each).
			h.opts.NoReuseConnection = false
		case "octo":
			h.opts.ConnectionCacheTimeout = dur()
		case "occ-max":
			h.opts.OCCMaxEntries = num()
		case "hold-resolutions":
			h.holdResolves = true
		case "oci":
			h.opts.ConnLimits = append(h.opts.ConnLimits, ConnLimit{Key: a.Vals[0], Initial: atoi(a.Vals[1])})
		case "ocm":
			h.opts.ConnLimits = append(h.opts.ConnLimits, ConnLimit{Key: a.Vals[0], Max: atoi(a.Vals[1])})
		default:
			t.Fatalf("unknown init argument %s", a.Key)
		}
	}
	h.opts.MailLog = maillog.New(maillog.Options{Sink: h})
	h.opts = h.opts.withDefaults()
	h.shell = &Scheduler{opts: h.opts}
	c, err := newCore(&h.shell.opts, projections.New(), h)
	if err != nil {
		t.Fatal(err)
	}
	h.core = c
	h.shell.core = c
	c.start(clk.Now())
	return h
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// The executor, answering from the script.

func (h *harness) appendEvents(events []log.Event) {
	h.done = append(h.done, func() { h.log.Append(context.Background(), events...) })
}

func (h *harness) resolve(job *resolveJob) {
	if h.holdResolves {
		h.heldResolves = append(h.heldResolves, job)
		return
	}
	h.done = append(h.done, func() { h.runResolve(job) })
}

// runResolve answers a resolution from the script, appends its events and
// reports the job done, as a worker does.
func (h *harness) runResolve(job *resolveJob) {
	{
		var results []resolveResult
		for _, r := range job.rcpts {
			_, domain, _ := strings.Cut(r.Addr, "@")
			var res resolver.Result
			switch route := h.routes[domain]; {
			case h.aliases[r.Addr] != nil:
				res.Expansion = h.aliases[r.Addr]
			case route == "", route == "fail":
				res.Failure = &resolver.Failure{Code: 550, Enhanced: "5.1.2", Text: "no route to " + domain}
			case route == "tempfail":
				res.Failure = &resolver.Failure{Code: 451, Enhanced: "4.4.3", Text: "DNS lookup for " + domain + " failed"}
			default:
				// One MX host per address, in preference order.
				res.Mailer = log.MailerESMTP
				res.Destination = "esmtp:" + domain + ":25"
				ips := strings.Split(route, ",")
				for i, ip := range ips {
					host := "mx." + domain
					if len(ips) > 1 {
						host = fmt.Sprintf("mx%d.%s", i+1, domain)
					}
					res.Hops = append(res.Hops, resolver.Hop{Host: host, Preference: 10 * (i + 1), Addrs: []netip.Addr{netip.MustParseAddr(ip)}})
				}
			}
			results = append(results, resolveResult{rcpt: r, result: res})
		}
		tr, _ := h.shell.txnReceived(job.seq)
		h.log.Append(context.Background(), resolveEvents(job, tr, results, h.clk.Now(), h.core.retry)...)
		h.core.resolveDone(job)
	}
}

func (h *harness) deliver(job *deliveryJob) {
	if h.hold {
		h.held = append(h.held, job)
		return
	}
	h.done = append(h.done, func() { h.runDelivery(job) })
}

// runDelivery plays the client: the route's addresses are tried in order
// (a reused session skips that), a down server refuses the connection, and
// the first server up takes the transaction.
func (h *harness) runDelivery(job *deliveryJob) {
	env := &client.Envelope{Txn: job.msg.Txn, From: job.sender}
	for _, r := range job.rcpts {
		env.Rcpts = append(env.Rcpts, client.Recipient{Index: r.Rcpt, Addr: r.Addr, Notify: r.Notify})
	}
	first := job.route.Hops[0]
	h.log.Append(context.Background(), log.Event{Txn: job.msg.Txn, Rcpt: log.NoRcpt, Payload: &log.AttemptStarted{Rcpts: indexes(job.rcpts), Mailer: job.route.Mailer, Host: first.Host, IP: first.Addrs[0]}})
	done := deliveryDone{job: job}
	var failed []client.Attempt
	var ip, host string
	var srv *server
	if sess := job.session; sess != nil {
		// A session from the connection cache: no new connection.
		h.reused[sess.IP]++
		ip, host, srv = sess.IP, sess.Host, h.servers[sess.IP]
		if srv == nil {
			srv = &server{}
		}
	}
	for _, hop := range job.route.Hops {
		for _, a := range hop.Addrs {
			if srv != nil {
				break
			}
			h.connects[a]++
			s := h.servers[a]
			if s == nil {
				s = &server{}
			}
			if s.down {
				failed = append(failed, client.Attempt{Host: hop.Host, IP: a, Port: 25, Stage: client.StageConnect,
					Reply: client.Reply{Code: 451, Enhanced: "4.4.1", Lines: []string{"connect to " + a + ": connection refused"}, Local: true}})
				done.unreachable = append(done.unreachable, a)
				continue
			}
			ip, host, srv = a, hop.Host, s
		}
	}
	var res *client.Result
	if srv == nil {
		res = client.FailedResult(env, failed, &client.ConnectError{Attempts: failed})
		done.destDown = true
	} else {
		done.connected = true
		done.sessionIP = ip
		done.session = job.session
		if done.session == nil {
			done.session = &client.Session{Host: host, IP: ip, Port: 25}
		}
		res = &client.Result{Attempts: failed, Host: host, IP: ip, Port: 25, Stage: client.StageDone, DSN: srv.dsn,
			Reply: client.Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"ok"}}}
		for _, r := range env.Rcpts {
			rep, ok := srv.rcpts[r.Addr]
			stage := client.StageRcpt
			if !ok {
				rep, stage = client.Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"ok"}}, client.StageDot
			}
			res.Rcpts = append(res.Rcpts, client.RcptResult{Rcpt: r, Reply: rep, Stage: stage})
		}
	}
	h.log.Append(context.Background(), outcomeEvents(job, "C1", "C2", res, done.destDown, h.clk.Now(), h.core.retry)...)
	h.core.delivered(done)
}

func indexes(rs []projections.Recipient) []int32 {
	var out []int32
	for _, r := range rs {
		out = append(out, r.Rcpt)
	}
	return out
}

func (h *harness) buildDSN(job *dsnJob) {
	if h.dsnFailures > 0 {
		h.dsnFailures--
		h.done = append(h.done, func() { h.core.dsnDone(job, errors.New("content store: no space left on device")) })
		return
	}
	h.done = append(h.done, func() {
		err := h.shell.runDSN(context.Background(), job)
		if err != nil {
			h.t.Fatalf("runDSN: %v", err)
		}
		h.core.dsnDone(job, err)
	})
}

func (h *harness) release(m projections.Message) {
	h.done = append(h.done, func() {
		h.log.Append(context.Background(), log.Event{Txn: m.Txn, Rcpt: log.NoRcpt, Payload: &log.ContentReleased{Content: m.Content}})
		h.content.Release(m.Content)
		h.core.releaseDone(m.Txn, nil)
	})
}

func (h *harness) closeSession(s *client.Session) { h.closed = append(h.closed, s.IP) }

// crash is a kill -9 of smxd followed by a restart: the work in flight
// (resolutions, deliveries, DSNs being built, appends not yet made) is
// lost, and so is every append after the one that holds event cut (0: the
// log is kept whole). The new scheduler starts from the projection
// replayed from the log, as smxd's recovery gives it, on the same clock.
func (h *harness) crash(cut uint64) string {
	var out strings.Builder
	h.done, h.held = nil, nil
	if cut > 0 {
		fmt.Fprintf(&out, "log cut after seq %d\n", h.log.cutAfter(cut))
	}
	q := projections.New()
	evs := h.log.since(0)
	for _, ev := range evs {
		if err := q.Apply(ev); err != nil {
			h.t.Fatalf("replay after the crash: %v", err)
		}
	}
	c, err := newCore(&h.shell.opts, q, h)
	if err != nil {
		h.t.Fatal(err)
	}
	h.core, h.shell.core = c, c
	h.applied = q.Seq()
	h.printed = min(h.printed, q.Seq())
	c.start(h.clk.Now())
	fmt.Fprintf(&out, "restarted at seq %d\n", q.Seq())
	return out.String()
}

// findEvent returns the Seq of the last event of type typ about txn (and
// recipient rcpt unless it is log.NoRcpt), or fails the test.
func (h *harness) findEvent(typ, txn string, rcpt int32) uint64 {
	var seq uint64
	for _, ev := range h.log.since(0) {
		if ev.Type().String() == typ && ev.Txn == txn && (rcpt == log.NoRcpt || ev.Rcpt == rcpt) {
			seq = ev.Seq
		}
	}
	if seq == 0 {
		h.t.Fatalf("no %s event for %s:%d", typ, txn, rcpt)
	}
	return seq
}

// pump applies new events, steps the core and runs what it asked for,
// until nothing changes.
func (h *harness) pump() {
	for i := 0; i < 100000; i++ {
		evs := h.log.since(h.applied)
		h.core.now = h.clk.Now()
		for _, ev := range evs {
			h.core.apply(h.decodedLike(ev))
			h.applied = ev.Seq
		}
		h.core.step(h.clk.Now())
		if len(h.done) == 0 && len(h.log.since(h.applied)) == 0 {
			return
		}
		work := h.done
		h.done = nil
		for _, f := range work {
			f()
		}
	}
	h.t.Fatal("pump does not settle")
}

// advance moves the clock to each wake-up of the core in turn until d has
// passed, as the real loop's timer would.
func (h *harness) advance(d time.Duration) {
	end := h.clk.Now().Add(d)
	for {
		h.pump()
		next, ok := h.core.nextWake()
		if !ok || next.After(end) {
			break
		}
		if !next.After(h.clk.Now()) {
			h.t.Fatalf("next wake %v is not after now %v: the loop would spin", rel(next), rel(h.clk.Now()))
		}
		h.clk.Set(next)
	}
	h.clk.Set(end)
	h.pump()
}

func rel(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return "+" + t.Sub(epoch).String()
}

// format renders one event for the story's expected output.
func format(ev log.Event) string {
	id := ev.Txn
	if ev.Rcpt != log.NoRcpt {
		id += ":" + strconv.Itoa(int(ev.Rcpt))
	}
	s := fmt.Sprintf("%s %s %s", rel(ev.Time), ev.Type(), id)
	switch p := ev.Payload.(type) {
	case *log.TxnReceived:
		var rs []string
		for _, r := range p.Rcpts {
			rs = append(rs, r.Addr)
		}
		s += fmt.Sprintf(" from=<%s> to=%s", p.Sender, strings.Join(rs, ","))
		if p.DSNOf != "" {
			s += " dsn-of=" + p.DSNOf + " " + p.Listener
		}
	case *log.RcptResolved:
		if p.Mailer == "" {
			var kids []string
			for _, k := range p.Expansion {
				kids = append(kids, fmt.Sprintf("%d:%s", k.Rcpt, k.Addr))
			}
			s += " expanded to " + strings.Join(kids, ",")
		} else {
			s += " " + p.Destination
		}
	case *log.AttemptStarted:
		s += fmt.Sprintf(" rcpts=%v ip=%s", p.Rcpts, p.IP)
	case *log.AttemptFinished:
		s += fmt.Sprintf(" stage=%s %d", p.Stage, p.Code)
	case *log.RcptDeferred:
		s += " next=" + rel(p.NextTry)
		if !p.HostDownUntil.IsZero() {
			s += " down"
		}
		s += " " + p.Reason
	case *log.RcptDelivered:
		if p.Relayed {
			s += " relayed"
		}
	case *log.RcptFailed:
		s += fmt.Sprintf(" %s %d %s", p.Stage, p.Code, p.Enhanced)
	case *log.RcptExpired:
		s += " " + p.Enhanced + " last=" + p.LastReason
	case *log.DSNQueued:
		s += fmt.Sprintf(" dsn=%s kind=%s rcpts=%v", p.DSN, p.Kind, p.Rcpts)
	case *log.DelayNotified:
		s += fmt.Sprintf(" dsn=%s rcpts=%v", p.DSN, p.Rcpts)
	case *log.Redirect:
		s += fmt.Sprintf(" to %d:%s by %s", p.NewRcpt, p.NewAddr, p.User)
	}
	return s
}

// printNew returns the events appended since the last print; with quiet
// it counts them by type instead.
func (h *harness) printNew(quiet bool) string {
	evs := h.log.since(h.printed)
	if len(evs) > 0 {
		h.printed = evs[len(evs)-1].Seq
	}
	var b strings.Builder
	if quiet {
		counts := map[string]int{}
		for _, ev := range evs {
			counts[ev.Type().String()]++
		}
		var keys []string
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s: %d\n", k, counts[k])
		}
		return b.String()
	}
	for _, ev := range evs {
		b.WriteString(format(ev))
		b.WriteByte('\n')
	}
	return b.String()
}

func (h *harness) receive(txn, from string, rcpts []log.Recipient) {
	h.receiveWith(txn, from, rcpts, "", "")
}

// receiveWith receives a message with the RET and ENVID parameters of its
// MAIL command.
func (h *harness) receiveWith(txn, from string, rcpts []log.Recipient, ret, envid string) {
	body := "From: <" + from + ">\r\nSubject: test " + txn + "\r\nMessage-ID: <" + txn + "@client>\r\n\r\nbody\r\n"
	ref := h.content.put(body)
	h.log.Append(context.Background(), log.Event{Txn: txn, Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
		Sender: from, Rcpts: rcpts, Content: ref, ContentSize: int64(len(body)), ReceivedAt: h.clk.Now(), Protocol: "ESMTP",
		RET: ret, ENVID: envid,
	}})
}

func parseNotify(s string) log.Notify {
	var n log.Notify
	for _, p := range strings.Split(strings.ToUpper(s), ",") {
		switch p {
		case "NEVER":
			n |= log.NotifyNever
		case "SUCCESS":
			n |= log.NotifySuccess
		case "FAILURE":
			n |= log.NotifyFailure
		case "DELAY":
			n |= log.NotifyDelay
		}
	}
	return n
}

func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var h *harness
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "init" && h == nil {
				h = newHarness(t, nil)
			}
			switch d.Cmd {
			case "init":
				h = newHarness(t, d.CmdArgs)
				return ""
			case "route":
				// route DOMAIN IP|fail|tempfail
				h.routes[d.CmdArgs[0].Key] = d.CmdArgs[1].Key
				return ""
			case "alias":
				// alias ADDR to=(A,B): ADDR expands into A and B.
				h.aliases[d.CmdArgs[0].Key] = d.CmdArgs[1].Vals
				return ""
			case "server":
				// server IP up|down|dsn|rcpt=ADDR code=N enhanced=X text=...
				ip := d.CmdArgs[0].Key
				srv := h.servers[ip]
				if srv == nil {
					srv = &server{rcpts: map[string]client.Reply{}}
					h.servers[ip] = srv
				}
				for _, a := range d.CmdArgs[1:] {
					switch a.Key {
					case "up":
						srv.down = false
					case "down":
						srv.down = true
					case "dsn":
						srv.dsn = true
					case "rcpt":
						code := atoi(a.Vals[1])
						srv.rcpts[a.Vals[0]] = client.Reply{Code: code, Enhanced: a.Vals[2], Lines: []string{strings.Join(a.Vals[3:], " ")}}
					}
				}
				return ""
			case "receive":
				// receive TXN from=ADDR to=A,B notify=...
				txn := d.CmdArgs[0].Key
				var from string
				var rcpts []log.Recipient
				var notify log.Notify
				var orcpts []string
				var ret, envid string
				for _, a := range d.CmdArgs[1:] {
					switch a.Key {
					case "from":
						if len(a.Vals) > 0 {
							from = a.Vals[0]
						}
					case "to":
						for _, v := range a.Vals {
							rcpts = append(rcpts, log.Recipient{Addr: v})
						}
					case "notify":
						notify = parseNotify(strings.Join(a.Vals, ","))
					case "orcpt":
						// orcpt=(X,Y): the ORCPT of each recipient in order.
						orcpts = a.Vals
					case "ret":
						ret = a.Vals[0]
					case "envid":
						envid = a.Vals[0]
					}
				}
				for i := range rcpts {
					rcpts[i].Notify = notify
					if i < len(orcpts) && orcpts[i] != "-" {
						rcpts[i].ORCPT = orcpts[i]
					}
				}
				h.receiveWith(txn, from, rcpts, ret, envid)
				return ""
			case "flood":
				// flood PREFIX n=N to=ADDR: N messages of one recipient.
				prefix := d.CmdArgs[0].Key
				var n int
				var to string
				d.ScanArgs(t, "n", &n)
				d.ScanArgs(t, "to", &to)
				for i := 0; i < n; i++ {
					h.receive(fmt.Sprintf("%s%05d", prefix, i), "s@client.test", []log.Recipient{{Addr: to}})
				}
				return ""
			case "run":
				h.pump()
				return h.printNew(d.HasArg("quiet"))
			case "advance":
				dur, err := time.ParseDuration(d.CmdArgs[0].Key)
				if err != nil {
					t.Fatal(err)
				}
				h.advance(dur)
				return h.printNew(d.HasArg("quiet"))
			case "finish":
				// finish [n]: complete n held deliveries, oldest first.
				n := len(h.held)
				if len(d.CmdArgs) > 0 && d.CmdArgs[0].Key != "quiet" {
					n = min(n, atoi(d.CmdArgs[0].Key))
				}
				jobs := h.held[:n]
				h.held = append([]*deliveryJob(nil), h.held[n:]...)
				for _, j := range jobs {
					h.runDelivery(j)
				}
				h.pump()
				return h.printNew(d.HasArg("quiet"))
			case "dsn-fail":
				// dsn-fail N: the next N DSN builds fail.
				h.dsnFailures = atoi(d.CmdArgs[0].Key)
				return ""
			case "resolved":
				// resolved [N] [lag] [feed=K]: finish N held resolutions
				// (all), oldest first. With lag the scheduler takes a step
				// after the workers' reports and before their events come
				// back through the feed, as the live loop may. With feed=K
				// the feed then brings only the first K of those events
				// before the scheduler steps again: the live feed returns
				// what is ready, which may end inside one append.
				n, feed := len(h.heldResolves), -1
				for _, a := range d.CmdArgs {
					switch a.Key {
					case "lag":
					case "feed":
						feed = atoi(a.Vals[0])
					default:
						n = min(n, atoi(a.Key))
					}
				}
				jobs := h.heldResolves[:n]
				h.heldResolves = append([]*resolveJob(nil), h.heldResolves[n:]...)
				for _, j := range jobs {
					h.runResolve(j)
				}
				if d.HasArg("lag") {
					h.core.now = h.clk.Now()
					h.core.step(h.clk.Now())
				}
				if feed >= 0 {
					evs := h.log.since(h.applied)
					h.core.now = h.clk.Now()
					for _, ev := range evs[:min(feed, len(evs))] {
						h.core.apply(h.decodedLike(ev))
						h.applied = ev.Seq
					}
					h.core.step(h.clk.Now())
				}
				h.pump()
				return h.printNew(false)
			case "redirect":
				// redirect TXN[:RCPT] to=ADDR: the operator's redirect of a
				// recipient or of the whole message, as the control socket
				// asks the scheduler for it.
				txn, rcpt := parseTarget(d.CmdArgs[0].Key)
				var to string
				d.ScanArgs(t, "to", &to)
				h.core.now = h.clk.Now()
				ev, err := h.core.redirect(txn, rcpt, to, log.Operator{User: "postmaster"})
				if err != nil {
					return "refused: " + err.Error() + "\n"
				}
				h.log.Append(context.Background(), ev)
				h.pump()
				return h.printNew(false)
			case "delete", "hold":
				// delete|hold TXN[:RCPT]: the operator's action on a
				// recipient or the whole message, as the control socket
				// asks the scheduler for it.
				txn, rcpt := parseTarget(d.CmdArgs[0].Key)
				who := log.Operator{User: "postmaster"}
				var p log.Payload = &log.Delete{Operator: who}
				if d.Cmd == "hold" {
					p = &log.Hold{Operator: who}
				}
				h.core.now = h.clk.Now()
				ev, err := h.core.operatorEvent(txn, rcpt, p)
				if err != nil {
					return "refused: " + err.Error() + "\n"
				}
				h.log.Append(context.Background(), ev)
				h.pump()
				return h.printNew(false)
			case "inflight":
				return fmt.Sprintf("%d\n", len(h.held))
			case "crash":
				// crash [after=(TYPE,TXN[,RCPT])]: kill -9 and restart; with
				// after, the log ends with the append holding the last such
				// event.
				var cut uint64
				for _, a := range d.CmdArgs {
					if a.Key == "after" {
						rcpt := log.NoRcpt
						if len(a.Vals) > 2 {
							rcpt = int32(atoi(a.Vals[2]))
						}
						cut = h.findEvent(a.Vals[0], a.Vals[1], rcpt)
					}
				}
				return h.crash(cut)
			case "count":
				// count TYPE [txn=TXN] [dsn-of=TXN]: events of a type.
				n := 0
				var txn, dsnOf string
				for _, a := range d.CmdArgs[1:] {
					switch a.Key {
					case "txn":
						txn = a.Vals[0]
					case "dsn-of":
						dsnOf = a.Vals[0]
					}
				}
				for _, ev := range h.log.since(0) {
					if ev.Type().String() != d.CmdArgs[0].Key || (txn != "" && ev.Txn != txn) {
						continue
					}
					if p, ok := ev.Payload.(*log.TxnReceived); dsnOf != "" && (!ok || p.DSNOf != dsnOf) {
						continue
					}
					n++
				}
				return fmt.Sprintf("%d\n", n)
			case "conns":
				return h.core.describeConns()
			case "maillog":
				// maillog FUNC: the mail log lines with func=FUNC.
				var b strings.Builder
				for _, l := range h.maillog {
					if strings.Contains(l, "func="+d.CmdArgs[0].Key+",") {
						b.WriteString(l + "\n")
					}
				}
				return b.String()
			case "sessions":
				// sessions: the transactions that reused a cached session
				// and the sessions closed, per IP, and what is idle now.
				var b strings.Builder
				for _, ip := range sortedKeys(h.reused) {
					fmt.Fprintf(&b, "reused %s %d\n", ip, h.reused[ip])
				}
				fmt.Fprintf(&b, "closed %v\n", h.closed)
				fmt.Fprintf(&b, "idle %d\n", h.core.idleCount)
				return b.String()
			case "connects":
				var ips []string
				for ip := range h.connects {
					ips = append(ips, ip)
				}
				sort.Strings(ips)
				var b strings.Builder
				for _, ip := range ips {
					fmt.Fprintf(&b, "%s %d\n", ip, h.connects[ip])
				}
				return b.String()
			case "queues":
				s := h.core.q.Sizes()
				return fmt.Sprintf("IQDB=%d AQ=%d DEFEDB=%d deferred-in-AQ=%d\n", s.IQDB, s.AQ, s.DEFEDB, h.core.deferredInAQ)
			case "dsn":
				// dsn TXN: the parsed DSN message.
				return h.describeDSN(d.CmdArgs[0].Key)
			case "disk":
				// disk FREE: the free bytes DiskFree reports from now on.
				h.diskFree = int64(atoi(d.CmdArgs[0].Key))
				return ""
			case "load":
				h.shell.publishLoad()
				st := h.shell.LoadState()
				return fmt.Sprintf("IQDB=%d/%d AQ=%d/%d DEFEDB=%d disk=%d throttle=%v refuse=%v %s\n", st.IQDB, st.IQDBMax, st.AQ, st.AQMax, st.DEFEDB, st.DiskFree, st.Throttle, st.Refuse, st.Reason)
			}
			t.Fatalf("unknown command %s", d.Cmd)
			return ""
		})
		// Whatever the story did, the state that outlives an AQ entry
		// holds copies, not the strings of the events it was fed, which
		// come as the log decodes them.
		if h != nil {
			if kept := h.retained(); len(kept) > 0 {
				t.Errorf("the scheduler keeps strings of decoded events:\n%s", strings.Join(kept, "\n"))
			}
		}
	})
}

// describeDSN parses the DSN message txn and prints its fields.
func (h *harness) describeDSN(txn string) string {
	var body string
	for _, ev := range h.log.since(0) {
		if p, ok := ev.Payload.(*log.TxnReceived); ok && ev.Txn == txn {
			body = h.content.body(p.Content)
		}
	}
	if body == "" {
		return "no such DSN\n"
	}
	p, err := parseDSN([]byte(body))
	if err != nil {
		h.t.Fatalf("DSN %s does not parse: %v", txn, err)
	}
	// Dates as the story's clock shows them.
	date := func(v string) string {
		t, err := mail.ParseDate(v)
		if err != nil {
			h.t.Fatalf("DSN %s: date %q: %v", txn, v, err)
		}
		return rel(t)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "to=%s subject=%q\n", p.to, p.subject)
	fmt.Fprintf(&b, "  from=%q reporting-mta=%q arrival=%s", p.from, p.perMessage.Get("Reporting-MTA"), date(p.perMessage.Get("Arrival-Date")))
	if id := p.perMessage.Get("Original-Envelope-Id"); id != "" {
		fmt.Fprintf(&b, " envid=%s", id)
	}
	b.WriteByte('\n')
	for _, r := range p.rcpts {
		fmt.Fprintf(&b, "  %s", r.Get("Final-Recipient"))
		if o := r.Get("Original-Recipient"); o != "" {
			fmt.Fprintf(&b, " orcpt=%q", o)
		}
		fmt.Fprintf(&b, " action=%s status=%s", r.Get("Action"), r.Get("Status"))
		if m := r.Get("Remote-MTA"); m != "" {
			fmt.Fprintf(&b, " remote-mta=%q", m)
		}
		if d := r.Get("Diagnostic-Code"); d != "" {
			fmt.Fprintf(&b, " diag=%q", strings.Join(strings.Fields(d), " "))
		}
		if d := r.Get("Last-Attempt-Date"); d != "" {
			fmt.Fprintf(&b, " last-attempt=%s", date(d))
		}
		if d := r.Get("Will-Retry-Until"); d != "" {
			fmt.Fprintf(&b, " retry-until=%s", date(d))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "  returned=%s", p.returned)
	if p.returned != "none" {
		fmt.Fprintf(&b, " body=%v", p.returnedBody)
	}
	b.WriteByte('\n')
	return b.String()
}

// anomalyFails is the stories' debug log: an event the queue's fold
// refuses as an anomaly (an outcome after a delete, say) fails the story,
// since the scheduler appended or allowed it.
type anomalyFails struct{ t *testing.T }

func (a anomalyFails) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (a anomalyFails) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "does not fit the queue") {
		r.Attrs(func(at slog.Attr) bool {
			a.t.Errorf("%s: %s", r.Message, at.Value)
			return true
		})
	}
	return nil
}

func (a anomalyFails) WithAttrs([]slog.Attr) slog.Handler { return a }
func (a anomalyFails) WithGroup(string) slog.Handler      { return a }

// parseTarget splits a story's TXN[:RCPT] as smxctl takes it; without
// :RCPT it names the whole message (log.NoRcpt).
func parseTarget(s string) (string, int32) {
	if txn, idx, ok := strings.Cut(s, ":"); ok {
		return txn, int32(atoi(idx))
	}
	return s, log.NoRcpt
}
