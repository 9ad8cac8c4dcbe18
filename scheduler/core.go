package scheduler

import (
	"container/heap"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/smtp/client"
)

// key names one recipient: its message's ss_ta and its index.
type key struct {
	txn  string
	rcpt int32
}

func (k key) String() string { return fmt.Sprintf("%s:%d", k.txn, k.rcpt) }

// phase is where an AQ entry stands in the scheduler.
type phase uint8

const (
	phaseResolving  phase = iota // waiting for SMAR
	phaseReady                   // resolved, in a group waiting for a connection
	phaseDelivering              // given to a delivery agent
)

// entry is one recipient in AQ, the scheduler's side of it.
type entry struct {
	rcpt         projections.Recipient
	fromDeferred bool
	takenAt      time.Time
	phase        phase
	group        *group
}

// group is the second level's unit: recipients of one message with one
// destination and one envelope sender, to go in one transaction.
type group struct {
	txn, dest, sender string
	conn              *conn
	route             client.Route
	entries           []*entry
	receivedAt        time.Time
	seq               uint64 // of the message, to order groups by age
	index             int    // in conn.pending
}

// groupHeap orders groups by the age of their message.
type groupHeap []*group

func (h groupHeap) Len() int { return len(h) }
func (h groupHeap) Less(i, j int) bool {
	if !h[i].receivedAt.Equal(h[j].receivedAt) {
		return h[i].receivedAt.Before(h[j].receivedAt)
	}
	return h[i].seq < h[j].seq
}
func (h groupHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *groupHeap) Push(x any) {
	g := x.(*group)
	g.index = len(*h)
	*h = append(*h, g)
}
func (h *groupHeap) Pop() any {
	old := *h
	g := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	g.index = -1
	return g
}

// conn is the outgoing connection state of one destination IP (or LMTP
// socket): the seed's OCC entry with the slow start window. Sessions count
// against the IP they reached: a route tries its addresses in order, and a
// session that fell back to the second address is the second address's.
type conn struct {
	key     string
	window  int // connections allowed now
	initial int // oci:
	max     int // ocm:
	open    int // sessions open: busy and idle
	busy    int
	pending groupHeap
	// unreachable is set when the last connection to the IP failed and
	// cleared when one succeeds: new transactions for a route wait in the
	// queue of the first of its IPs that is not unreachable, the one they
	// are expected to reach.
	unreachable bool
	// used is when a transaction last started or ended here; an IP
	// without sessions or waiting transactions is forgotten some time
	// after it (see sweep).
	used time.Time
}

// idleSession is a session waiting in the connection cache for another
// transaction to its destination.
type idleSession struct {
	sess  *client.Session
	dest  string
	conn  *conn
	since time.Time
}

// resolveJob asks SMAR about the recipients of one message.
type resolveJob struct {
	txn        string
	seq        uint64 // of the message's TxnReceived
	receivedAt time.Time
	rcpts      []projections.Recipient
	// next is the first free recipient index for expansions.
	next int32
	// end is set by the worker before it reports: the first index its
	// expansions left free (next when there were none).
	end int32
}

// deliveryJob is one transaction for a delivery agent.
type deliveryJob struct {
	msg     projections.Message
	dest    string
	sender  string
	route   client.Route
	rcpts   []projections.Recipient
	connKey string
	// session is an idle session to reuse, or nil for a new one.
	session *client.Session
}

// deliveryDone is what a finished delivery tells the core.
type deliveryDone struct {
	job *deliveryJob
	// session is the session to keep for reuse, nil when it is closed.
	session *client.Session
	// connected is true when a session was used (new or reused).
	connected bool
	// destDown is true when the destination could not be reached.
	destDown bool
	// delivered counts recipients the server took.
	delivered int
	// sessionIP is the address (or LMTP socket) of the session the
	// transaction ran over; "" when none was open.
	sessionIP string
	// unreachable lists the addresses a connection was tried to and
	// failed, in the order tried (the client's failed attempts), other
	// than sessionIP.
	unreachable []string
}

// dsnJob asks for one DSN to be built and queued.
type dsnJob struct {
	orig  projections.Message
	rcpts []projections.Recipient
	// kind is log.DSNFailure, log.DSNDelay or log.DSNSuccess.
	kind string
	// to is where the DSN goes.
	to string
	// doubleBounce marks a bounce of a message from the null sender,
	// which goes to the double_bounce_address and is itself never
	// bounced.
	doubleBounce bool
	// full asks for the whole original rather than its header.
	full bool
}

// executor carries out what the core decides. The daemon's executor
// starts goroutines; the tests' one answers from a script.
type executor interface {
	appendEvents(events []log.Event)
	resolve(job *resolveJob)
	deliver(job *deliveryJob)
	buildDSN(job *dsnJob)
	release(msg projections.Message)
	closeSession(s *client.Session)
}

// Listener values of the TxnReceived of messages QMGR makes itself (the
// field names the smtps section for received mail and is empty
// otherwise). The projection reads them: a failure of a double bounce owes
// nothing, a failure of any other mail from the null sender owes a double
// bounce.
const (
	ListenerDSN          = projections.ListenerDSN
	ListenerDoubleBounce = projections.ListenerDoubleBounce
)

// core is the scheduler's state machine: it owns the projection and AQ,
// and decides; it never blocks and never does I/O except through the
// executor and point reads of the log (EventLog.Get). Only one goroutine
// uses it.
type core struct {
	opts   *Options
	q      *projections.Queue
	exec   executor
	retry  *retryPolicy
	limits *connLimits
	logger *slog.Logger
	now    time.Time

	aq           map[key]*entry
	deferredInAQ int
	takenOrder   []key // in take order, for scheduler_timeout
	groups       map[groupKey]*group
	conns        map[string]*conn
	runnable     map[*conn]bool
	idle         map[string][]*idleSession // by destination
	idleCount    int

	resolving      map[string]int           // txn -> jobs in flight
	resolveWait    []*resolveJob            // jobs waiting for a free resolver, in order
	resolveBlocked map[string][]*resolveJob // jobs waiting for their message's job to end
	resolvers      int
	// unresolved counts, per message, its AQ entries waiting for SMAR
	// (phaseResolving): in a job waiting or in flight, or answered and
	// waiting for the answer to come back through the feed. dispatch
	// holds the message's groups back while it is not zero.
	unresolved map[string]int
	// reserved holds, per message, the first recipient index that
	// expansions and redirects appended but not yet applied may use: a
	// worker reports before its events come back through the feed, and
	// the next job must not hand out the same indexes again.
	reserved map[string]int32
	// operating holds the recipients (key{txn, log.NoRcpt}: the whole
	// message) an operator's delete or redirect was granted for whose
	// event has not come back through the feed: admit leaves them where
	// they are, so that no resolution or delivery starts that the event
	// would cut off (see grant).
	operating map[key]int

	destReason map[string]string // why a destination was marked down (see downReason)
	// swept is when sweep last forgot the connection states and down
	// reasons nobody needs any more.
	swept time.Time

	dsnPending    map[string]time.Time // txn -> when its owed DSNs must go
	dsnInProgress map[string]bool
	releasing     map[string]bool
	delayWarn     map[string]*delayWarning // txn -> recipients to warn

	delivering int // delivery jobs in flight
	dirty      bool
	loadRefuse bool // the disk space hysteresis of LoadState

	// draining is set by Drain: nothing new is started; drained is
	// closed once nothing is in flight (see guard.go).
	draining bool
	drained  chan struct{}
	// appendedSeq and appendsPending tell Drain how far the scheduler's
	// own appends went and whether some are still queued; nil in tests
	// that drive the core alone.
	appendedSeq    func() uint64
	appendsPending func() bool
}

type groupKey struct{ txn, dest, sender string }

// delayWarning is a delay warning to build for some recipients of one
// message, not before due (a build that failed waits retry_min_delay).
type delayWarning struct {
	rcpts []int32
	due   time.Time
}

func newCore(opts *Options, q *projections.Queue, exec executor) (*core, error) {
	limits, err := newConnLimits(opts)
	if err != nil {
		return nil, err
	}
	return &core{
		opts: opts, q: q, exec: exec, limits: limits, logger: opts.Logger,
		retry: &retryPolicy{min: opts.RetryMinDelay, max: opts.RetryMaxDelay, expiry: opts.QueueReturnTimeout,
			fuzz: opts.RetryFuzz, rand: opts.Rand},
		aq: map[key]*entry{}, groups: map[groupKey]*group{}, conns: map[string]*conn{},
		runnable: map[*conn]bool{}, idle: map[string][]*idleSession{},
		resolving: map[string]int{}, unresolved: map[string]int{}, reserved: map[string]int32{}, operating: map[key]int{}, resolveBlocked: map[string][]*resolveJob{}, destReason: map[string]string{},
		dsnPending: map[string]time.Time{}, dsnInProgress: map[string]bool{},
		releasing: map[string]bool{}, delayWarn: map[string]*delayWarning{},
	}, nil
}

// start looks at the restored projection for what the last run left
// undone, so that a restarted scheduler goes on as the live one would
// have:
//
//   - DSNs owed are due merge_delay_max after the earliest failure still
//     waiting for one, as they were live;
//   - a delay warning is owed to a recipient deferred at or after
//     queue_delay_timeout and not warned: the daemon stopped between the
//     deferral and the warning's DelayNotified.
//
// It reads the log (Get) only for the few recipients that may be owed
// something and whose next try does not tell.
func (c *core) start(now time.Time) {
	c.now = now
	c.q.Scan(func(m projections.Message, rcpts []projections.Recipient) bool {
		owesDSN := m.DSNOwed > 0
		mayWarn := m.Live > 0 && m.DSNOf == "" && now.Sub(m.ReceivedAt) >= c.opts.QueueDelayTimeout
		if !owesDSN && !mayWarn {
			return true
		}
		var since time.Time
		for _, r := range rcpts {
			switch {
			case r.DSNOwed:
				if t := c.eventTimeOf(r.LastSeq, now); since.IsZero() || t.Before(since) {
					since = t
				}
			case mayWarn && c.owesDelayWarning(m, r, now) && c.deferredLateEnough(m, r):
				c.warn(m.Txn, r.Rcpt, now)
			}
		}
		if owesDSN {
			c.dsnPending[m.Txn] = since.Add(c.opts.MergeDelayMax)
		}
		return true
	})
}

// deferredLateEnough reports whether the last deferral of r, a deferred
// recipient of m, came at or after queue_delay_timeout, which is when a
// live scheduler would have warned. The deferral lies between its next try
// minus retry_max_delay (no deferral is for longer) and its next try, so
// the log is read only for the recipients whose next try falls within
// retry_max_delay after the threshold: a restart after a long stop does
// not read the deferral of every old recipient in DEFEDB.
func (c *core) deferredLateEnough(m projections.Message, r projections.Recipient) bool {
	threshold := m.ReceivedAt.Add(c.opts.QueueDelayTimeout)
	switch {
	case r.Due.Before(threshold):
		return false
	case !r.Due.Add(-c.opts.RetryMaxDelay).Before(threshold):
		return true
	}
	return !c.eventTimeOf(r.LastSeq, threshold).Before(threshold)
}

// eventTimeOf returns the time of event seq, or fallback when it cannot be
// read.
func (c *core) eventTimeOf(seq uint64, fallback time.Time) time.Time {
	if seq == 0 {
		return fallback
	}
	ev, err := c.opts.Log.Get(seq)
	if err != nil {
		c.logger.Warn("scheduler: read event", "seq", seq, "err", err)
		return fallback
	}
	return eventTime(ev, fallback)
}

// apply folds one event from the feed and reacts to it.
func (c *core) apply(ev log.Event) {
	if err := c.q.Apply(ev); err != nil {
		for _, a := range projections.Anomalies(err) {
			c.logger.Warn("scheduler: event does not fit the queue", "anomaly", a.Error())
		}
	}
	k := key{ev.Txn, ev.Rcpt}
	switch p := ev.Payload.(type) {
	case *log.TxnReceived:
		c.dirty = true
	case *log.RcptResolved:
		c.onResolved(k, p)
	case *log.RcptDeferred:
		c.leave(k)
		c.onDeferred(ev, p)
	case *log.RcptDelivered, *log.RcptFailed, *log.RcptExpired:
		c.leave(k)
		c.onTerminal(ev)
	case *log.Delete, *log.Redirect:
		c.leaveAll(ev.Txn, ev.Rcpt)
		c.ungrant(ev.Txn, ev.Rcpt)
	case *log.Hold:
		c.untakeAll(ev.Txn, ev.Rcpt)
	case *log.DSNQueued:
		delete(c.dsnInProgress, ev.Txn)
		c.dirty = true
	case *log.ContentReleased:
		delete(c.releasing, ev.Txn)
		delete(c.reserved, ev.Txn)
	case *log.Requeue, *log.Release:
		// The projection made the recipients due (and forgot the host
		// status of their destinations).
		c.dirty = true
	}
	if c.draining {
		c.checkDrained()
	}
}

// leave drops an AQ entry whose recipient left AQ in the log.
func (c *core) leave(k key) {
	e, ok := c.aq[k]
	if !ok {
		return
	}
	c.drop(k, e)
}

func (c *core) drop(k key, e *entry) {
	delete(c.aq, k)
	if e.phase == phaseResolving {
		c.resolvedOne(k.txn)
	}
	if e.fromDeferred {
		c.deferredInAQ--
	}
	if e.group != nil && e.phase == phaseReady {
		c.removeFromGroup(e)
	}
	c.dirty = true
}

// await takes an AQ entry out of scheduling while an event the scheduler
// appended for it (a deferral without an attempt) is on its way to the
// log: the entry leaves AQ when the event comes back through the feed,
// and until then an operator's delete or redirect is refused instead of
// landing before the event (see grant).
func (c *core) await(k key, e *entry) {
	if e.phase == phaseResolving {
		c.resolvedOne(k.txn)
	}
	if e.group != nil && e.phase == phaseReady {
		c.removeFromGroup(e)
	}
	e.phase = phaseDelivering
	c.dirty = true
}

// leaveAll drops the entries of txn (all of them for NoRcpt) that are not
// being delivered.
func (c *core) leaveAll(txn string, rcpt int32) {
	for k, e := range c.aq {
		if k.txn == txn && (rcpt == log.NoRcpt || k.rcpt == rcpt) && e.phase != phaseDelivering {
			c.drop(k, e)
		}
	}
}

// untakeAll puts back held recipients that are not being delivered.
func (c *core) untakeAll(txn string, rcpt int32) {
	for k, e := range c.aq {
		if k.txn == txn && (rcpt == log.NoRcpt || k.rcpt == rcpt) && e.phase != phaseDelivering {
			c.drop(k, e)
			c.q.Untake(k.txn, k.rcpt)
		}
	}
}

func (c *core) removeFromGroup(e *entry) {
	g := e.group
	e.group = nil
	for i, x := range g.entries {
		if x == e {
			g.entries = append(g.entries[:i], g.entries[i+1:]...)
			break
		}
	}
	if len(g.entries) == 0 {
		delete(c.groups, groupKey{g.txn, g.dest, g.sender})
		if g.index >= 0 {
			heap.Remove(&g.conn.pending, g.index)
		}
	}
}

// onResolved moves a resolved recipient into its group, or defers it at
// once when its destination is known to be down.
func (c *core) onResolved(k key, p *log.RcptResolved) {
	e, ok := c.aq[k]
	if !ok || e.phase != phaseResolving {
		return
	}
	if p.Mailer == "" {
		// An alias expansion: the recipient is finished, the new ones
		// are in IQDB.
		c.drop(k, e)
		c.dirty = true
		return
	}
	e.rcpt.Destination = p.Destination
	if until, down := c.q.HostDown(p.Destination, c.now); down {
		c.await(k, e)
		reason := "not tried: " + p.Destination + " is down until " + until.Format(time.RFC3339) + ": " + c.downReason(p.Destination)
		c.exec.appendEvents([]log.Event{{Txn: k.txn, Rcpt: k.rcpt, Payload: &log.RcptDeferred{
			NextTry: until, Reason: reason, Destination: p.Destination,
		}}})
		c.logNotTried(e.rcpt, p.Destination, until, reason)
		return
	}
	c.resolvedOne(k.txn)
	e.phase = phaseReady
	route := client.Route{Mailer: p.Mailer, Hops: p.Hops, Port: p.Port, Socket: p.Socket}
	gk := groupKey{k.txn, p.Destination, e.rcpt.Sender}
	g, ok := c.groups[gk]
	if !ok {
		cn := c.expectedConn(route)
		g = &group{txn: k.txn, dest: p.Destination, sender: e.rcpt.Sender, conn: cn, route: route, index: -1}
		if m, ok := c.q.Message(k.txn); ok {
			g.receivedAt, g.seq = m.ReceivedAt, m.Seq
		}
		c.groups[gk] = g
		heap.Push(&cn.pending, g)
		c.runnable[cn] = true
	}
	e.group = g
	g.entries = append(g.entries, e)
	c.dirty = true
}

// resolvedOne notes that an AQ entry of txn no longer waits for SMAR.
func (c *core) resolvedOne(txn string) {
	if n := c.unresolved[txn] - 1; n > 0 {
		c.unresolved[txn] = n
	} else {
		delete(c.unresolved, txn)
	}
}

// downReason says why the host status cache has dest down: the reason of
// the deferral that marked it, remembered when it was applied or, after a
// restart, read from the log (the projection keeps which event it was).
func (c *core) downReason(dest string) string {
	if reason, ok := c.destReason[dest]; ok {
		return reason
	}
	reason := "destination is down"
	if seq := c.q.HostDownCause(dest); seq != 0 {
		if ev, err := c.opts.Log.Get(seq); err == nil {
			if p, ok := ev.Payload.(*log.RcptDeferred); ok && p.Reason != "" {
				reason = p.Reason
			}
		}
	}
	// Kept beyond the events they come from: copies, so that they do not
	// hold the log's decoded records alive (see log.Event).
	c.destReason[strings.Clone(dest)] = strings.Clone(reason)
	return reason
}

// isUnixRoute reports whether r goes to an LMTP unix socket.
func isUnixRoute(r client.Route) bool {
	return r.Socket != "" || (r.Mailer == log.MailerLMTP && r.Port == 0 && len(r.Hops) == 0)
}

// routeKeys names the connection states a route's sessions may count
// against, in the order the client tries them: each address of each hop
// (slow start is per destination IP; a hop without addresses is its host,
// an IP literal), or the LMTP socket.
func routeKeys(r client.Route) []string {
	if isUnixRoute(r) {
		return []string{"unix:" + r.Socket}
	}
	var keys []string
	for _, h := range r.Hops {
		switch {
		case len(h.Addrs) > 0:
			keys = append(keys, h.Addrs...)
		case h.Host != "":
			keys = append(keys, h.Host)
		}
	}
	if len(keys) == 0 {
		return []string{"none"}
	}
	return keys
}

// ipKey names the connection state of a session over r that reached ip
// (the client's Session.IP or Attempt.IP).
func ipKey(r client.Route, ip string) string {
	if isUnixRoute(r) {
		return routeKeys(r)[0]
	}
	return ip
}

// moveWaiting moves the transactions waiting in the queue of cn, which
// just became unreachable, to the queue of the address each is now
// expected to reach (the next one of its route), so that they wait for
// that address's window instead of the one that failed.
func (c *core) moveWaiting(cn *conn) {
	var stay groupHeap
	for _, g := range cn.pending {
		to := c.expectedConn(g.route)
		if to == cn {
			stay = append(stay, g)
			continue
		}
		g.conn = to
		heap.Push(&to.pending, g)
		c.runnable[to] = true
	}
	for i, g := range stay {
		g.index = i
	}
	cn.pending = stay
	heap.Init(&cn.pending)
}

// expectedConn returns the connection state a new session for route is
// expected to count against: the first address of the route not known
// unreachable, or the first address when all are.
func (c *core) expectedConn(r client.Route) *conn {
	keys := routeKeys(r)
	for _, k := range keys {
		if cn, ok := c.conns[k]; !ok || !cn.unreachable {
			return c.conn(k)
		}
	}
	return c.conn(keys[0])
}

func (c *core) conn(k string) *conn {
	cn, ok := c.conns[k]
	if !ok {
		ip := k
		if h, _, err := net.SplitHostPort(k); err == nil {
			ip = h
		}
		initial, maximum := c.limits.lookup(ip)
		// The key comes from a route, a decoded event's strings: a copy,
		// so that the state does not keep the event alive.
		k = strings.Clone(k)
		cn = &conn{key: k, window: initial, initial: initial, max: maximum, used: c.now}
		c.conns[k] = cn
	}
	return cn
}

// onDeferred reacts to a deferral: a destination marked down takes its
// waiting recipients with it, and a recipient queued long enough is due a
// delay warning.
func (c *core) onDeferred(ev log.Event, p *log.RcptDeferred) {
	if !p.HostDownUntil.IsZero() && p.Destination != "" {
		c.destReason[strings.Clone(p.Destination)] = strings.Clone(p.Reason)
		c.deferDestination(p.Destination, p.HostDownUntil, p.Reason)
	}
	r, ok := c.q.Recipient(ev.Txn, ev.Rcpt)
	if !ok {
		return
	}
	if m, ok := c.q.Message(ev.Txn); ok && c.owesDelayWarning(m, r, eventTime(ev, c.now)) {
		c.warn(ev.Txn, ev.Rcpt, c.now)
	}
}

// owesDelayWarning reports whether recipient r of message m, deferred at
// deferredAt, is due a delay warning: it asked for one (NOTIFY), has an
// envelope sender to send it to, is not part of a DSN, was queued
// queue_delay_timeout by then, and was never warned (DelayNotified).
func (c *core) owesDelayWarning(m projections.Message, r projections.Recipient, deferredAt time.Time) bool {
	return r.State == projections.StateDeferred && !r.DelayWarned && r.Sender != "" &&
		notifies(r.Notify, log.NotifyDelay) && m.DSNOf == "" &&
		deferredAt.Sub(m.ReceivedAt) >= c.opts.QueueDelayTimeout
}

// warn queues a delay warning for recipient rcpt of txn, to be built at
// due or later with the others of the message that are waiting.
func (c *core) warn(txn string, rcpt int32, due time.Time) {
	w := c.delayWarn[txn]
	if w == nil {
		w = &delayWarning{due: due}
		c.delayWarn[strings.Clone(txn)] = w
	}
	if !slices.Contains(w.rcpts, rcpt) {
		w.rcpts = append(w.rcpts, rcpt)
	}
	if due.Before(w.due) {
		w.due = due
	}
	c.dirty = true
}

// notifies reports whether NOTIFY n asks for condition (no NOTIFY means
// FAILURE,DELAY).
func notifies(n, condition log.Notify) bool {
	if n == 0 {
		return condition == log.NotifyFailure || condition == log.NotifyDelay
	}
	return n&log.NotifyNever == 0 && n&condition != 0
}

// deferDestination defers every recipient in AQ that waits for dest
// (resolved, not yet given to a delivery agent) to until, without a
// connection.
func (c *core) deferDestination(dest string, until time.Time, reason string) {
	var waiting []*entry
	for gk, g := range c.groups {
		if gk.dest == dest {
			waiting = append(waiting, g.entries...)
		}
	}
	slices.SortFunc(waiting, func(a, b *entry) int {
		if n := strings.Compare(a.rcpt.Txn, b.rcpt.Txn); n != 0 {
			return n
		}
		return int(a.rcpt.Rcpt - b.rcpt.Rcpt)
	})
	var events []log.Event
	for _, e := range waiting {
		k := key{e.rcpt.Txn, e.rcpt.Rcpt}
		c.await(k, e)
		why := "not tried: " + dest + " is down: " + reason
		events = append(events, log.Event{Txn: k.txn, Rcpt: k.rcpt, Payload: &log.RcptDeferred{
			NextTry: until, Reason: why, Destination: dest,
		}})
		c.logNotTried(e.rcpt, dest, until, why)
	}
	if len(events) > 0 {
		c.exec.appendEvents(events)
	}
}

// logNotTried writes the mail log line of a recipient deferred without a
// delivery attempt because the host status cache has its destination
// down: no delivery agent line tells of it. It is the queue manager's
// line of seed 001 ("func=q_upd_rcpt_ok, rcpt_id=..."), with the
// destination, the next try, the reason and the time in queue.
func (c *core) logNotTried(r projections.Recipient, dest string, next time.Time, reason string) {
	ln := c.opts.MailLog.Recipient("q_upd_rcpt_deferred", r.Txn, int(r.Rcpt)).Rcpt(r.Addr).
		Str("dest", dest).Str("next_try", next.UTC().Format(time.RFC3339)).Str("reason", reason)
	if m, ok := c.q.Message(r.Txn); ok {
		ln = ln.Delay(c.now.Sub(m.ReceivedAt))
	}
	ln.Write()
}

// onTerminal notes the DSNs a terminal event made owed. What is owed is
// the projection's to say (see package projections): a bounce for a
// failure, a success notice for a relayed delivery, and a double bounce
// for a failure of mail from the null sender. A double bounce that fails
// owes nothing: it is dropped and logged, never bounced again.
func (c *core) onTerminal(ev log.Event) {
	m, ok := c.q.Message(ev.Txn)
	if !ok {
		return
	}
	if m.DSNOwed > 0 {
		if _, pending := c.dsnPending[ev.Txn]; !pending {
			c.dsnPending[strings.Clone(ev.Txn)] = eventTime(ev, c.now).Add(c.opts.MergeDelayMax)
		}
		c.dirty = true
		return
	}
	switch ev.Payload.(type) {
	case *log.RcptFailed, *log.RcptExpired:
	default:
		return
	}
	if r, ok := c.q.Recipient(ev.Txn, ev.Rcpt); ok && m.DoubleBounce {
		c.opts.MailLog.Recipient("q_double_bounce_dropped", m.Txn, int(r.Rcpt)).Rcpt(r.Addr).
			Str("status", "dropped").Str("reason", "double bounce undeliverable").Write()
		c.logger.Warn("scheduler: double bounce undeliverable, dropped", "txn", m.Txn, "rcpt", r.Addr)
	}
}

// eventTime is when ev happened: decisions that depend on time take it
// from the event, not from when the scheduler saw it, so that a restarted
// scheduler reading the same events decides the same.
func eventTime(ev log.Event, fallback time.Time) time.Time {
	if ev.Time.IsZero() {
		return fallback
	}
	return ev.Time
}

// fill is the first level: it moves due recipients into AQ following seed
// 004's fairness. DEFEDB may first fill its reserved share, then IQDB takes
// what it needs of the rest (new mail is favoured), then DEFEDB takes what
// is left up to its cap, which keeps the rest for new mail.
func (c *core) fill() {
	sizes := c.q.Sizes()
	free := c.opts.AQMaxEntries - sizes.AQ
	if free <= 0 {
		return
	}
	reserve := int(float64(c.opts.AQMaxEntries) * c.opts.DeferredReserve)
	capD := int(float64(c.opts.AQMaxEntries) * c.opts.DeferredCap)
	var taken []projections.Recipient
	var fromDeferred []bool
	take := func(from projections.QueueName, n int) int {
		if n <= 0 {
			return 0
		}
		rs := c.q.Take(from, c.now, n)
		if len(rs) == n {
			rs = c.takeRest(from, rs)
		}
		for range rs {
			fromDeferred = append(fromDeferred, from == projections.DEFEDB)
		}
		taken = append(taken, rs...)
		return len(rs)
	}
	n := take(projections.DEFEDB, min(free, reserve-c.deferredInAQ))
	free -= n
	c.deferredInAQ += n
	free -= take(projections.IQDB, free)
	n = take(projections.DEFEDB, min(free, capD-c.deferredInAQ))
	c.deferredInAQ += n
	if len(taken) == 0 {
		return
	}
	c.admit(taken, fromDeferred)
}

// takeRest completes the last message of rs, recipients Take returned at
// its limit: the message's other recipients due in the same queue come
// too, so that its recipients that share a destination are resolved and
// sent together (seed 004: "mail from one envelope to the same
// destination site is sent in one transaction") instead of one now and
// the rest when AQ has room again. AQ may so hold more than
// AQ_max_entries by at most one message's recipients per queue.
func (c *core) takeRest(from projections.QueueName, rs []projections.Recipient) []projections.Recipient {
	txn := rs[len(rs)-1].Txn
	for _, r := range c.q.Recipients(txn) {
		if r.Queue != from || r.Active || r.Held || (from != projections.IQDB && r.Due.After(c.now)) {
			continue
		}
		if c.q.Claim(txn, r.Rcpt) {
			if claimed, ok := c.q.Recipient(txn, r.Rcpt); ok {
				rs = append(rs, claimed)
			}
		}
	}
	return rs
}

// admit makes AQ entries of taken recipients and asks SMAR about them, one
// job per message; recipients past queue_return_timeout expire instead.
func (c *core) admit(taken []projections.Recipient, fromDeferred []bool) {
	jobs := map[string]*resolveJob{}
	var order []*resolveJob
	var expired []log.Event
	for i, r := range taken {
		k := key{r.Txn, r.Rcpt}
		m, ok := c.q.Message(r.Txn)
		if !ok || c.operating[k] > 0 || c.operating[key{r.Txn, log.NoRcpt}] > 0 {
			c.q.Untake(r.Txn, r.Rcpt)
			if fromDeferred[i] {
				c.deferredInAQ--
			}
			continue
		}
		e := &entry{rcpt: r, fromDeferred: fromDeferred[i], takenAt: c.now}
		c.aq[k] = e
		c.takenOrder = append(c.takenOrder, k)
		if !c.now.Before(m.ReceivedAt.Add(c.opts.QueueReturnTimeout)) {
			e.phase = phaseDelivering // no longer schedulable; leaves with the event
			expired = append(expired, log.Event{Txn: r.Txn, Rcpt: r.Rcpt, Payload: &log.RcptExpired{
				LastReason: c.lastReason(r), Enhanced: "4.4.7",
			}})
			continue
		}
		c.unresolved[r.Txn]++
		job := jobs[r.Txn]
		if job == nil {
			job = &resolveJob{txn: r.Txn, seq: m.Seq, receivedAt: m.ReceivedAt, next: c.nextIndex(r.Txn)}
			jobs[r.Txn] = job
			order = append(order, job)
		}
		job.rcpts = append(job.rcpts, r)
	}
	if len(expired) > 0 {
		c.exec.appendEvents(expired)
	}
	c.resolveWait = append(c.resolveWait, order...)
}

// nextIndex returns the first recipient index of txn that no recipient
// uses and no expansion or redirect on its way to the log has taken.
func (c *core) nextIndex(txn string) int32 {
	next := int32(0)
	for _, r := range c.q.Recipients(txn) {
		next = max(next, r.Rcpt+1)
	}
	if reserved, ok := c.reserved[txn]; ok {
		if reserved <= next {
			// The projection has caught up.
			delete(c.reserved, txn)
		} else {
			next = reserved
		}
	}
	return next
}

// reserve records that indexes of txn below end are taken by events not
// applied yet.
func (c *core) reserve(txn string, end int32) {
	if end > c.reserved[txn] {
		c.reserved[txn] = end
	}
}

// lastReason returns the reason of the recipient's last deferral.
func (c *core) lastReason(r projections.Recipient) string {
	if r.LastSeq == 0 {
		return ""
	}
	ev, err := c.opts.Log.Get(r.LastSeq)
	if err != nil {
		return ""
	}
	if p, ok := ev.Payload.(*log.RcptDeferred); ok {
		return p.Reason
	}
	return ""
}

// startResolves hands waiting jobs to SMAR: at most MaxResolvers at a
// time and one per message, so that expansions of one message get
// distinct recipient indexes.
func (c *core) startResolves() {
	for len(c.resolveWait) > 0 && c.resolvers < c.opts.MaxResolvers {
		job := c.resolveWait[0]
		c.resolveWait[0] = nil
		c.resolveWait = c.resolveWait[1:]
		if c.resolving[job.txn] > 0 {
			c.resolveBlocked[job.txn] = append(c.resolveBlocked[job.txn], job)
			continue
		}
		// Recipients that left AQ while waiting are not resolved.
		live := job.rcpts[:0]
		for _, r := range job.rcpts {
			if e, ok := c.aq[key{r.Txn, r.Rcpt}]; ok && e.phase == phaseResolving {
				live = append(live, r)
			}
		}
		if len(live) == 0 {
			continue
		}
		job.rcpts = live
		job.next = max(job.next, c.nextIndex(job.txn))
		c.resolvers++
		c.resolving[job.txn]++
		c.exec.resolve(job)
	}
	if len(c.resolveWait) == 0 {
		c.resolveWait = nil
	}
}

// resolveDone is told when a resolve job has appended its events.
func (c *core) resolveDone(job *resolveJob) {
	c.reserve(job.txn, job.end)
	c.resolvers--
	if c.resolving[job.txn]--; c.resolving[job.txn] <= 0 {
		delete(c.resolving, job.txn)
		if blocked := c.resolveBlocked[job.txn]; len(blocked) > 0 {
			delete(c.resolveBlocked, job.txn)
			c.resolveWait = append(blocked, c.resolveWait...)
		}
	}
	// A connection whose oldest group waited for this resolution stayed
	// runnable (see dispatch).
	c.dirty = true
}

// maxRcpts is the transaction size for a mailer.
func (c *core) maxRcpts(mailer string) int {
	if mailer == log.MailerLMTP {
		return c.opts.LMTPMaxRcptsPerTransaction
	}
	return c.opts.SMTPMaxRcptsPerTransaction
}

// dispatch gives ready groups to delivery agents, oldest first per
// destination IP, over idle sessions to their destination or new sessions
// within the slow start window.
func (c *core) dispatch() {
	conns := make([]*conn, 0, len(c.runnable))
	for cn := range c.runnable {
		conns = append(conns, cn)
	}
	slices.SortFunc(conns, func(a, b *conn) int { return strings.Compare(a.key, b.key) })
	for _, cn := range conns {
		waiting := false // for resolutions: stays runnable
		for cn.pending.Len() > 0 {
			g := cn.pending[0]
			if c.unresolved[g.txn] > 0 && len(g.entries) < c.maxRcpts(g.route.Mailer) {
				// Wait for the rest of the message's recipients in AQ
				// so that one transaction carries all of them that go
				// here: those SMAR has not answered for, and those whose
				// answer a worker reported but the feed has not brought
				// yet. Groups behind it are younger; they wait too (the
				// resolution is short).
				waiting = true
				break
			}
			// The transaction holds one open session of the IP it counts
			// against: an idle one's (which may be another address of the
			// route than cn's), or a new one within cn's window.
			var sess *client.Session
			holder := cn
			if s := c.takeIdle(g.dest); s != nil {
				sess, holder = s.sess, s.conn
			} else if cn.open >= cn.window {
				// Full: delivered or an idle session closing makes the
				// connection runnable again.
				break
			} else {
				cn.open++
			}
			holder.busy++
			holder.used = c.now
			c.startGroup(g, sess, holder)
		}
		if !waiting {
			delete(c.runnable, cn)
		}
	}
}

// startGroup hands up to maxRcpts recipients of g to a delivery agent; the
// rest of g stays queued.
func (c *core) startGroup(g *group, sess *client.Session, holder *conn) {
	n := min(len(g.entries), c.maxRcpts(g.route.Mailer))
	batch := g.entries[:n]
	job := &deliveryJob{dest: g.dest, sender: g.sender, route: g.route, connKey: holder.key, session: sess}
	for _, e := range batch {
		e.phase = phaseDelivering
		e.group = nil
		job.rcpts = append(job.rcpts, e.rcpt)
	}
	g.entries = append([]*entry(nil), g.entries[n:]...)
	if len(g.entries) == 0 {
		delete(c.groups, groupKey{g.txn, g.dest, g.sender})
		heap.Remove(&g.conn.pending, g.index)
	}
	m, _ := c.q.Message(g.txn)
	job.msg = m
	c.delivering++
	c.exec.deliver(job)
}

// takeIdle returns an idle session to dest, if any.
func (c *core) takeIdle(dest string) *idleSession {
	list := c.idle[dest]
	for len(list) > 0 {
		s := list[len(list)-1]
		list = list[:len(list)-1]
		c.idleCount--
		if s.sess.Usable() {
			c.setIdle(dest, list)
			return s
		}
		s.conn.open--
		c.exec.closeSession(s.sess)
	}
	c.setIdle(dest, list)
	return nil
}

func (c *core) setIdle(dest string, list []*idleSession) {
	if len(list) == 0 {
		delete(c.idle, dest)
	} else {
		c.idle[dest] = list
	}
}

// delivered is told when a delivery job is over. The windows are those of
// the IPs the client's attempts name: each address that could not be
// reached halves its window and is marked unreachable; the address the
// session reached grows its window by one with a transaction it took (and
// halves it when it answered 421). The transaction's open session moves to
// the IP it reached, where a usable one waits for the next transaction.
func (c *core) delivered(d deliveryDone) {
	c.delivering--
	cn := c.conn(d.job.connKey)
	cn.busy--
	cn.used = c.now
	holder := cn
	var reached *conn
	if d.sessionIP != "" {
		reached = c.conn(ipKey(d.job.route, d.sessionIP))
		if reached != cn {
			cn.open--
			reached.open++
			holder = reached
		}
	}
	for _, ip := range d.unreachable {
		u := c.conn(ipKey(d.job.route, ip))
		if u == reached {
			continue
		}
		u.window = max(1, u.window/2)
		if !u.unreachable {
			u.unreachable = true
			c.moveWaiting(u)
		}
	}
	switch {
	case reached != nil:
		reached.unreachable = false
		if d.destDown {
			reached.window = max(1, reached.window/2)
		} else if d.connected {
			reached.window = min(reached.max, reached.window+1)
		}
	case d.destDown && len(d.unreachable) == 0:
		// No attempt names an address: count it against the one the
		// transaction was expected to reach.
		cn.window = max(1, cn.window/2)
	}
	if d.session != nil && !c.opts.NoReuseConnection && d.session.Usable() {
		c.idle[d.job.dest] = append(c.idle[d.job.dest], &idleSession{sess: d.session, dest: d.job.dest, conn: holder, since: c.now})
		c.idleCount++
		for c.idleCount > c.opts.OCCMaxEntries {
			c.evictOldestIdle()
		}
	} else {
		holder.open--
		if d.session != nil {
			c.exec.closeSession(d.session)
		}
	}
	for _, x := range []*conn{cn, holder} {
		if x.pending.Len() > 0 {
			c.runnable[x] = true
		}
	}
	c.dirty = true
}

func (c *core) evictOldestIdle() {
	var oldest *idleSession
	for _, list := range c.idle {
		for _, s := range list {
			if oldest == nil || s.since.Before(oldest.since) {
				oldest = s
			}
		}
	}
	if oldest == nil {
		c.idleCount = 0
		return
	}
	c.removeIdle(oldest)
}

func (c *core) removeIdle(s *idleSession) {
	list := c.idle[s.dest]
	for i, x := range list {
		if x == s {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	c.setIdle(s.dest, list)
	c.idleCount--
	s.conn.open--
	c.exec.closeSession(s.sess)
	if s.conn.pending.Len() > 0 {
		c.runnable[s.conn] = true
	}
}

// expireIdle closes sessions idle longer than octo.
func (c *core) expireIdle() {
	var old []*idleSession
	for _, list := range c.idle {
		for _, s := range list {
			if !c.now.Before(s.since.Add(c.opts.ConnectionCacheTimeout)) {
				old = append(old, s)
			}
		}
	}
	slices.SortFunc(old, func(a, b *idleSession) int { return a.since.Compare(b.since) })
	for _, s := range old {
		c.removeIdle(s)
	}
}

// sweep forgets, at most once per retry_max_delay, what the scheduler
// keeps per destination and no longer needs, so that a long-running daemon
// that has talked to many destinations does not keep them all (nor list
// them all in its metrics):
//
//   - the connection state of an IP with no session and no waiting
//     transaction, last used retry_max_delay ago or more; its slow start
//     begins again at initial_connections with the next transaction, as
//     Postfix's does when a destination's queue empties. A window that
//     failures shrank, or an IP marked unreachable, is kept until
//     queue_return_timeout has passed, when no recipient deferred by
//     those failures can still be queued: its retries start small.
//   - the down reason of a destination the host status cache no longer
//     has down.
func (c *core) sweep() {
	if c.now.Sub(c.swept) < c.opts.RetryMaxDelay {
		return
	}
	c.swept = c.now
	for k, cn := range c.conns {
		idle := c.now.Sub(cn.used)
		keep := c.opts.RetryMaxDelay
		if cn.unreachable || cn.window < cn.initial {
			keep = c.opts.QueueReturnTimeout
		}
		if cn.open == 0 && cn.busy == 0 && cn.pending.Len() == 0 && idle >= keep {
			delete(c.conns, k)
			delete(c.runnable, cn)
		}
	}
	for dest := range c.destReason {
		if _, down := c.q.HostDown(dest, c.now); !down {
			delete(c.destReason, dest)
		}
	}
}

// timeouts defers recipients that stayed in AQ longer than
// scheduler_timeout without reaching a delivery agent.
func (c *core) timeouts() {
	if len(c.takenOrder) > 2*len(c.aq)+1024 {
		// Forget the keys of recipients that left AQ, keeping the order.
		keep := c.takenOrder[:0]
		for _, k := range c.takenOrder {
			if _, ok := c.aq[k]; ok {
				keep = append(keep, k)
			}
		}
		c.takenOrder = keep
	}
	var events []log.Event
	for n := len(c.takenOrder); n > 0 && len(c.takenOrder) > 0; n-- {
		k := c.takenOrder[0]
		e, ok := c.aq[k]
		if !ok {
			c.takenOrder = c.takenOrder[1:]
			continue
		}
		limit := e.takenAt.Add(c.opts.SchedulerTimeout)
		if e.phase == phaseDelivering {
			// A delivery agent has it; delivery_timeout bounds that. One
			// that never reported (its events could not be appended) is
			// given up after both timeouts. Until then it goes to the
			// back so that it does not hold up the others.
			limit = limit.Add(c.opts.DeliveryTimeout)
			if limit.After(c.now) {
				c.takenOrder = append(c.takenOrder[1:], k)
				continue
			}
		} else if limit.After(c.now) {
			break
		}
		c.takenOrder = c.takenOrder[1:]
		m, _ := c.q.Message(k.txn)
		next, expired := c.retry.next(c.now, m.ReceivedAt)
		var p log.Payload = &log.RcptDeferred{NextTry: next, Reason: "scheduler timeout: no result within " + c.opts.SchedulerTimeout.String(), Destination: e.rcpt.Destination}
		if expired {
			p = &log.RcptExpired{LastReason: "scheduler timeout", Enhanced: "4.4.7"}
		}
		c.drop(k, e)
		events = append(events, log.Event{Txn: k.txn, Rcpt: k.rcpt, Payload: p})
	}
	if len(events) > 0 {
		c.exec.appendEvents(events)
	}
}

// dsns starts the DSN jobs that are due: owed DSNs once every recipient
// of the message was tried at least once, merge_delay_max after the first
// failure, or when max_errors_per_DSN are waiting; delay warnings at once.
func (c *core) dsns() {
	for _, txn := range sortedKeys(c.delayWarn) {
		w := c.delayWarn[txn]
		if c.dsnInProgress[txn] || c.now.Before(w.due) {
			continue
		}
		delete(c.delayWarn, txn)
		m, ok := c.q.Message(txn)
		if !ok {
			continue
		}
		var list []projections.Recipient
		for _, i := range w.rcpts {
			if r, ok := c.q.Recipient(txn, i); ok && !r.DelayWarned && r.State == projections.StateDeferred {
				list = append(list, r)
			}
		}
		if len(list) == 0 {
			continue
		}
		c.dsnInProgress[txn] = true
		c.exec.buildDSN(&dsnJob{orig: m, rcpts: list, kind: log.DSNDelay, to: list[0].Sender})
	}
	for _, txn := range sortedKeys(c.dsnPending) {
		due := c.dsnPending[txn]
		if c.dsnInProgress[txn] {
			continue
		}
		m, ok := c.q.Message(txn)
		if !ok || m.DSNOwed == 0 {
			delete(c.dsnPending, txn)
			continue
		}
		rs := c.q.Recipients(txn)
		var failed, success []projections.Recipient
		untried, bouncedBefore := false, false
		for _, r := range rs {
			switch {
			case r.DSNOwed && r.State == projections.StateDelivered:
				success = append(success, r)
			case r.DSNOwed:
				failed = append(failed, r)
			case r.State == projections.StateIncoming || r.State == projections.StateResolved || r.State == projections.StateInFlight:
				untried = true
			case r.State == projections.StateFailed || r.State == projections.StateExpired:
				bouncedBefore = true
			}
		}
		if untried && c.now.Before(due) && len(failed) < c.opts.MaxErrorsPerDSN && len(success) < c.opts.MaxErrorsPerDSN {
			continue
		}
		delete(c.dsnPending, txn)
		job := func(list []projections.Recipient, kind string, full bool) {
			// One DSN per envelope sender (an expansion may have named a
			// list owner): the others wait for the next round.
			same := list[:0:0]
			for _, r := range list {
				if r.Sender == list[0].Sender {
					same = append(same, r)
				}
			}
			if len(same) < len(list) {
				c.dsnPending[txn] = c.now
			}
			list = same
			if len(list) > c.opts.MaxErrorsPerDSN {
				list = list[:c.opts.MaxErrorsPerDSN]
				c.dsnPending[txn] = c.now // the rest go in the next DSN
			}
			c.dsnInProgress[txn] = true
			job := &dsnJob{orig: m, rcpts: list, kind: kind, to: list[0].Sender, full: full}
			if job.to == "" {
				// A failure of mail from the null sender: the double
				// bounce goes to the postmaster.
				job.to, job.doubleBounce = c.opts.DoubleBounceAddress, true
			}
			c.exec.buildDSN(job)
		}
		switch {
		case len(failed) > 0:
			job(failed, log.DSNFailure, !c.opts.HeaderOnly && !bouncedBefore)
			if len(success) > 0 {
				// The success notices go in a DSN of their own, next.
				c.dsnPending[txn] = c.now
			}
		case len(success) > 0:
			job(success, log.DSNSuccess, false)
		}
	}
}

// dsnDone is told when a DSN job is over; on failure the DSN is tried
// again after retry_min_delay (it is still owed in the projection).
func (c *core) dsnDone(job *dsnJob, err error) {
	if err == nil {
		return
	}
	delete(c.dsnInProgress, job.orig.Txn)
	retry := c.now.Add(c.opts.RetryMinDelay)
	if job.kind == log.DSNDelay {
		// Nothing was logged: the recipients are not warned yet. Try
		// again later, not at once (a store that failed now will likely
		// fail on the next step too); recipients delivered or failed by
		// then are left out when it is built.
		for _, r := range job.rcpts {
			c.warn(job.orig.Txn, r.Rcpt, retry)
		}
		if w := c.delayWarn[job.orig.Txn]; w != nil {
			w.due = retry
		}
		return
	}
	c.dsnPending[job.orig.Txn] = retry
	c.dirty = true
}

// releases asks the content store to release bodies nothing references.
func (c *core) releases() {
	for _, m := range c.q.Releasable() {
		if c.releasing[m.Txn] || c.dsnInProgress[m.Txn] {
			continue
		}
		c.releasing[m.Txn] = true
		c.exec.release(m)
	}
}

// releaseDone is told when a release failed, to try again later.
func (c *core) releaseDone(txn string, err error) {
	if err != nil {
		delete(c.releasing, txn)
	}
}

// step runs every decision that may be due at now.
func (c *core) step(now time.Time) {
	c.now = now
	if c.draining {
		c.checkDrained()
		return
	}
	c.timeouts()
	c.expireIdle()
	c.sweep()
	c.dsns()
	c.releases()
	c.fill()
	c.startResolves()
	c.dispatch()
	c.dirty = false
}

// nextWake returns when step must run next if nothing else happens.
func (c *core) nextWake() (time.Time, bool) {
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if c.q.Sizes().AQ < c.opts.AQMaxEntries {
		// A due time in the past means the fairness limits hold those
		// recipients back: AQ space freeing up wakes the scheduler then.
		for _, from := range []projections.QueueName{projections.IQDB, projections.DEFEDB} {
			if t, ok := c.q.NextDueIn(from); ok && t.After(c.now) {
				consider(t)
			}
		}
	}
	for txn, t := range c.dsnPending {
		// One being built is finished by its worker's report, not by time.
		if !c.dsnInProgress[txn] && t.After(c.now) {
			consider(t)
		}
	}
	for txn, w := range c.delayWarn {
		if !c.dsnInProgress[txn] && w.due.After(c.now) {
			consider(w.due)
		}
	}
	for _, list := range c.idle {
		for _, s := range list {
			consider(s.since.Add(c.opts.ConnectionCacheTimeout))
		}
	}
	if len(c.takenOrder) > 0 {
		// timeouts left the first recipient not being delivered at the
		// head, if there is one.
		t := c.now.Add(time.Second)
		if e, ok := c.aq[c.takenOrder[0]]; ok {
			limit := e.takenAt.Add(c.opts.SchedulerTimeout)
			if e.phase == phaseDelivering {
				limit = limit.Add(c.opts.DeliveryTimeout)
			}
			if limit.After(c.now) {
				t = limit
			}
		}
		consider(t)
	}
	return next, !next.IsZero()
}

// shutdown closes every idle session.
func (c *core) shutdown() {
	for _, list := range c.idle {
		for _, s := range list {
			c.exec.closeSession(s.sess)
		}
	}
	c.idle = map[string][]*idleSession{}
	c.idleCount = 0
}

// describe renders the connection state for tests and smxctl.
func (c *core) describeConns() string {
	var b strings.Builder
	keys := make([]string, 0, len(c.conns))
	for k := range c.conns {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		cn := c.conns[k]
		fmt.Fprintf(&b, "%s window=%d max=%d open=%d busy=%d waiting=%d", k, cn.window, cn.max, cn.open, cn.busy, cn.pending.Len())
		if cn.unreachable {
			b.WriteString(" unreachable")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// sortedKeys returns the keys of m in order, so that decisions taken over a
// map come out the same way every time.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
