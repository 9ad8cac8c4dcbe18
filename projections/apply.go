package projections

import (
	"fmt"
	"strings"

	"github.com/smx-mta/smx/log"
)

// Apply folds e into the queue. Events must come in log order: an event
// whose Seq is not above Seq() is refused (it was applied already) and
// leaves the queue unchanged; a gap in the sequence numbers is reported as
// an anomaly and the event is applied anyway.
//
// The returned error is nil, or one or more *Anomaly (see Anomalies): the
// parts of the event that fit the state machine are applied, the others
// are ignored, and the result is the same whenever the same events are
// applied.
func (q *Queue) Apply(e log.Event) error {
	if e.Seq <= q.seq {
		return &Anomaly{Kind: AnomalyDuplicate, Seq: e.Seq, Type: typeOf(e), Txn: e.Txn, Rcpt: e.Rcpt,
			Reason: fmt.Sprintf("already applied (queue is at seq %d)", q.seq)}
	}
	as := anomalies{event: e}
	if q.seq != 0 && e.Seq != q.seq+1 {
		as.add(AnomalyGap, log.NoRcpt, "gap in the log: seq %d to %d missing", q.seq+1, e.Seq-1)
	}
	q.seq = e.Seq
	if t := e.Time.UnixNano(); !e.Time.IsZero() && t > q.time {
		q.time = t
	}
	switch p := e.Payload.(type) {
	case *log.TxnReceived:
		if p != nil {
			q.applyReceived(e, p, &as)
		}
	case *log.RcptResolved:
		if p != nil {
			q.applyResolved(e, p, &as)
		}
	case *log.AttemptStarted:
		if p != nil {
			q.applyAttemptStarted(e, p, &as)
		}
	case *log.AttemptFinished:
		// The outcome per recipient follows as its own event; the
		// attempt itself changes no recipient.
		if p != nil {
			if _, ok := q.message(e, &as); ok {
				q.counters.Attempts++
			}
		}
	case *log.RcptDeferred:
		if p != nil {
			q.applyDeferred(e, p, &as)
		}
	case *log.RcptDelivered:
		if p != nil {
			q.applyFinal(e, StateDelivered, p.Relayed, &as)
		}
	case *log.RcptFailed:
		if p != nil {
			q.applyFinal(e, StateFailed, false, &as)
		}
	case *log.RcptExpired:
		if p != nil {
			q.applyFinal(e, StateExpired, false, &as)
		}
	case *log.DelayNotified:
		if p != nil {
			q.applyDelayNotified(e, p, &as)
		}
	case *log.DSNQueued:
		if p != nil {
			q.applyDSNQueued(e, p, &as)
		}
	case *log.ContentReleased:
		if p != nil {
			q.applyContentReleased(e, &as)
		}
	case *log.Hold:
		if p != nil {
			q.applyHold(e, true, &as)
		}
	case *log.Release:
		if p != nil {
			q.applyHold(e, false, &as)
		}
	case *log.Delete:
		if p != nil {
			q.applyDelete(e, &as)
		}
	case *log.Requeue:
		if p != nil {
			q.applyRequeue(e, &as)
		}
	case *log.Redirect:
		if p != nil {
			q.applyRedirect(e, p, &as)
		}
	default:
		as.add(AnomalyMalformed, e.Rcpt, "unknown event type %d", typeOf(e))
		return as.err()
	}
	if e.Payload != nil && isNilPayload(e.Payload) {
		as.add(AnomalyMalformed, e.Rcpt, "event without payload")
	}
	return as.err()
}

// isNilPayload reports a typed nil pointer in the Payload interface.
func isNilPayload(p log.Payload) bool {
	switch p := p.(type) {
	case *log.TxnReceived:
		return p == nil
	case *log.RcptResolved:
		return p == nil
	case *log.AttemptStarted:
		return p == nil
	case *log.AttemptFinished:
		return p == nil
	case *log.RcptDeferred:
		return p == nil
	case *log.RcptDelivered:
		return p == nil
	case *log.RcptFailed:
		return p == nil
	case *log.RcptExpired:
		return p == nil
	case *log.DelayNotified:
		return p == nil
	case *log.DSNQueued:
		return p == nil
	case *log.ContentReleased:
		return p == nil
	case *log.Hold:
		return p == nil
	case *log.Release:
		return p == nil
	case *log.Delete:
		return p == nil
	case *log.Requeue:
		return p == nil
	case *log.Redirect:
		return p == nil
	}
	return false
}

// message looks up the transaction of e.
func (q *Queue) message(e log.Event, as *anomalies) (uint32, bool) {
	slot, ok := q.store.lookup(e.Txn)
	if !ok {
		as.add(AnomalyUnknownTxn, e.Rcpt, "unknown transaction")
		return 0, false
	}
	return slot, true
}

// liveRcpt checks that recipient idx of the message in slot exists and is
// live, reporting why not.
func (q *Queue) liveRcpt(slot uint32, idx int32, as *anomalies) bool {
	m := q.store.at(slot)
	if idx < 0 || int(idx) >= len(m.rcpts) || m.rcpts[idx].state == StateNone {
		as.add(AnomalyNoRecipient, idx, "no such recipient")
		return false
	}
	r := &m.rcpts[idx]
	if !r.state.Live() {
		as.add(AnomalyAfterTerminal, idx, "recipient is already %s (seq %d)", r.state, r.lastSeq)
		return false
	}
	return true
}

func (q *Queue) applyReceived(e log.Event, p *log.TxnReceived, as *anomalies) {
	if e.Txn == "" {
		as.add(AnomalyMalformed, log.NoRcpt, "transaction without ss_ta")
		return
	}
	if slot, dup := q.store.lookup(e.Txn); dup {
		as.add(AnomalyDuplicate, log.NoRcpt, "transaction already received (seq %d)", q.store.at(slot).seq)
		return
	}
	contentIsTxn := p.Content == e.Txn
	var b strings.Builder
	n := len(e.Txn) + len(p.Sender) + len(p.DSNOf)
	if !contentIsTxn {
		n += len(p.Content)
	}
	for i := range p.Rcpts {
		n += len(p.Rcpts[i].Addr)
	}
	b.Grow(n)
	b.WriteString(e.Txn)
	txnEnd := b.Len()
	b.WriteString(p.Sender)
	senderEnd := b.Len()
	if !contentIsTxn {
		b.WriteString(p.Content)
	}
	contentEnd := b.Len()
	b.WriteString(p.DSNOf)
	dsnOfEnd := b.Len()
	rcpts := make([]rcpt, len(p.Rcpts))
	due := e.Time.UnixNano()
	for i := range p.Rcpts {
		off := b.Len()
		b.WriteString(p.Rcpts[i].Addr)
		rcpts[i] = rcpt{
			due:     due,
			lastSeq: e.Seq,
			addrOff: uint32(off),
			addrLen: uint32(len(p.Rcpts[i].Addr)),
			heapPos: -1,
			state:   StateIncoming,
			notify:  p.Rcpts[i].Notify,
		}
	}
	received := due
	if !p.ReceivedAt.IsZero() {
		received = p.ReceivedAt.UnixNano()
	}
	slot := q.store.alloc()
	m := q.store.at(slot)
	*m = message{
		strs:       b.String(),
		rcpts:      rcpts,
		receivedAt: received,
		seq:        e.Seq,
		size:       p.ContentSize,
		txnEnd:     uint32(txnEnd),
		senderEnd:  uint32(senderEnd),
		contentEnd: uint32(contentEnd),
		dsnOfEnd:   uint32(dsnOfEnd),
	}
	if contentIsTxn {
		m.flags |= msgContentIsTxn
	}
	if p.DSNOf != "" && p.Listener == ListenerDoubleBounce {
		m.flags |= msgDoubleBounce
	}
	q.store.insert(slot)
	q.addRefs(slot, int32(len(rcpts)))
	for i := range rcpts {
		q.attach(slot, int32(i))
	}
	q.counters.Received.Msgs++
	q.counters.Received.Rcpts += uint64(len(rcpts))
	q.counters.Received.Bytes += uint64(max(p.ContentSize, 0))
}

func (q *Queue) applyResolved(e log.Event, p *log.RcptResolved, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok || !q.liveRcpt(slot, e.Rcpt, as) {
		return
	}
	if p.Mailer == "" {
		q.expand(e, slot, p, as)
		return
	}
	q.detach(slot, e.Rcpt)
	r := &q.store.at(slot).rcpts[e.Rcpt]
	r.state = StateResolved
	r.lastSeq = e.Seq
	if p.Destination != "" {
		r.dest = q.intern(p.Destination)
	}
	q.attach(slot, e.Rcpt)
}

// expand finishes recipient e.Rcpt as expanded and creates the recipients
// of p.Expansion in IQDB.
func (q *Queue) expand(e log.Event, slot uint32, p *log.RcptResolved, as *anomalies) {
	m := q.store.at(slot)
	parent := e.Rcpt
	owner := m.extra[parent].owner
	if p.Owner != "" {
		owner = p.Owner
	}
	q.detach(slot, parent)
	m.rcpts[parent].state = StateExpanded
	m.rcpts[parent].lastSeq = e.Seq
	q.attach(slot, parent)
	q.addRefs(slot, -1)

	// Accept each new index once, and only where no recipient is yet.
	var kids []log.ExpandedRcpt
	seen := make(map[int32]bool, len(p.Expansion))
	for _, k := range p.Expansion {
		switch {
		case k.Rcpt < 0:
			as.add(AnomalyMalformed, k.Rcpt, "expansion of recipient %d uses a negative index", parent)
		case int(k.Rcpt) < len(m.rcpts) && m.rcpts[k.Rcpt].state != StateNone, seen[k.Rcpt]:
			as.add(AnomalyDuplicate, k.Rcpt, "expansion of recipient %d reuses index %d", parent, k.Rcpt)
		default:
			seen[k.Rcpt] = true
			kids = append(kids, k)
		}
	}
	if len(kids) == 0 {
		return
	}
	addrs := make([]string, len(kids))
	for i, k := range kids {
		addrs[i] = k.Addr
	}
	offs := m.appendAddrs(addrs)
	due := e.Time.UnixNano()
	top := int32(0)
	for _, k := range kids {
		top = max(top, k.Rcpt)
	}
	m.growRcpts(int(top) + 1)
	// The kids of one expansion share the owner and, mostly, the
	// original recipient: one copy of each serves them all.
	owner = strings.Clone(owner)
	var lastORCPT string
	for i, k := range kids {
		m.rcpts[k.Rcpt] = rcpt{
			due:     due,
			lastSeq: e.Seq,
			addrOff: offs[i],
			addrLen: uint32(len(k.Addr)),
			heapPos: -1,
			state:   StateIncoming,
			notify:  k.Notify,
		}
		if k.ORCPT != lastORCPT {
			lastORCPT = strings.Clone(k.ORCPT)
		}
		m.setExtra(k.Rcpt, rcptExtra{owner: owner, orcpt: lastORCPT})
	}
	q.addRefs(slot, int32(len(kids)))
	for _, k := range kids {
		q.attach(slot, k.Rcpt)
	}
	q.counters.Expanded += uint64(len(kids))
}

func (q *Queue) applyAttemptStarted(e log.Event, p *log.AttemptStarted, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok {
		return
	}
	for _, idx := range p.Rcpts {
		if !q.liveRcpt(slot, idx, as) {
			continue
		}
		q.detach(slot, idx)
		r := &q.store.at(slot).rcpts[idx]
		r.state = StateInFlight
		r.lastSeq = e.Seq
		q.attach(slot, idx)
	}
}

func (q *Queue) applyDeferred(e log.Event, p *log.RcptDeferred, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok || !q.liveRcpt(slot, e.Rcpt, as) {
		return
	}
	m := q.store.at(slot)
	q.detach(slot, e.Rcpt)
	r := &m.rcpts[e.Rcpt]
	r.state = StateDeferred
	r.lastSeq = e.Seq
	r.due = e.Time.UnixNano()
	if !p.NextTry.IsZero() {
		r.due = p.NextTry.UnixNano()
	}
	// Leaving AQ: the claim ends with the deferral.
	r.flags = r.flags&^rcptClaimed | rcptWasDeferred
	dest := r.dest
	if p.Destination != "" {
		dest = q.intern(p.Destination)
		if r.dest == 0 {
			r.dest = dest
		}
	}
	q.attach(slot, e.Rcpt)
	if dest != 0 && !p.HostDownUntil.IsZero() {
		q.dests[dest].downUntil = p.HostDownUntil.UnixNano()
		q.dests[dest].downSeq = e.Seq
	}
	size := uint64(max(m.size, 0))
	q.counters.Deferred.add(size)
	if dest != 0 {
		q.dests[dest].counters.Deferred.add(size)
	}
}

// applyFinal handles the terminal outcomes of delivery: delivered, failed,
// expired.
func (q *Queue) applyFinal(e log.Event, state RcptState, relayed bool, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok || !q.liveRcpt(slot, e.Rcpt, as) {
		return
	}
	m := q.store.at(slot)
	dest := m.rcpts[e.Rcpt].dest
	q.finish(slot, e.Rcpt, state, e.Seq, relayed)
	size := uint64(max(m.size, 0))
	var total, per *Tally
	switch state {
	case StateDelivered:
		total, per = &q.counters.Delivered, &q.dests[dest].counters.Delivered
		// A delivery proves the destination up.
		q.dests[dest].downUntil, q.dests[dest].downSeq = 0, 0
	case StateFailed:
		total, per = &q.counters.Failed, &q.dests[dest].counters.Failed
	case StateExpired:
		total, per = &q.counters.Expired, &q.dests[dest].counters.Expired
	}
	total.add(size)
	if dest != 0 {
		per.add(size)
	}
}

// finish moves a live recipient to a terminal state and settles the
// reference count: one less live recipient, one more if it is owed a DSN.
func (q *Queue) finish(slot uint32, idx int32, state RcptState, seq uint64, relayed bool) {
	m := q.store.at(slot)
	q.detach(slot, idx)
	r := &m.rcpts[idx]
	r.state = state
	r.lastSeq = seq
	delta := int32(-1)
	if owesDSN(state, r.notify, m.rcptSender(idx), relayed, m.flags&msgDoubleBounce != 0) {
		r.flags |= rcptDSNOwed
		delta = 0
	}
	q.attach(slot, idx)
	q.addRefs(slot, delta)
}

// rcptList returns the recipients an event names: its Rcpts list, or every
// recipient of the message when the list is empty and all is true.
func rcptList(m *message, list []int32, all bool) []int32 {
	if len(list) > 0 || !all {
		return list
	}
	out := make([]int32, 0, len(m.rcpts))
	for i := range m.rcpts {
		if m.rcpts[i].state != StateNone {
			out = append(out, int32(i))
		}
	}
	return out
}

func (q *Queue) applyDelayNotified(e log.Event, p *log.DelayNotified, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok {
		return
	}
	m := q.store.at(slot)
	for _, idx := range p.Rcpts {
		if idx < 0 || int(idx) >= len(m.rcpts) || m.rcpts[idx].state == StateNone {
			as.add(AnomalyNoRecipient, idx, "no such recipient")
			continue
		}
		r := &m.rcpts[idx]
		if r.flags&rcptDelayWarned != 0 {
			as.add(AnomalySecondDelayWarning, idx, "second delay warning for the recipient")
		}
		r.flags |= rcptDelayWarned
	}
}

func (q *Queue) applyDSNQueued(e log.Event, p *log.DSNQueued, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok {
		return
	}
	m := q.store.at(slot)
	q.counters.DSNs++
	var settled int32
	for _, idx := range rcptList(m, p.Rcpts, true) {
		if idx < 0 || int(idx) >= len(m.rcpts) || m.rcpts[idx].state == StateNone {
			as.add(AnomalyNoRecipient, idx, "no such recipient")
			continue
		}
		r := &m.rcpts[idx]
		switch p.Kind {
		case log.DSNDelay:
			r.flags |= rcptDelayWarned
		case log.DSNFailure, log.DSNSuccess:
			want := p.Kind == log.DSNSuccess
			if r.flags&rcptDSNOwed != 0 && (r.state == StateDelivered) == want {
				r.flags &^= rcptDSNOwed
				settled++
			}
		default:
			as.add(AnomalyMalformed, log.NoRcpt, "unknown DSN kind %q", p.Kind)
			return
		}
	}
	if settled > 0 {
		q.addRefs(slot, -settled)
	}
}

func (q *Queue) applyContentReleased(e log.Event, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok {
		return
	}
	m := q.store.at(slot)
	if m.flags&msgContentRemoved != 0 {
		as.add(AnomalyDuplicate, log.NoRcpt, "content released twice")
		return
	}
	if m.refs > 0 {
		as.add(AnomalyEarlyRelease, log.NoRcpt, "content released while %d references remain", m.refs)
		m.flags |= msgContentRemoved
		delete(q.releasable, slot)
		return
	}
	q.removeMessage(slot)
}

// applyHold handles Hold (on) and Release (off).
func (q *Queue) applyHold(e log.Event, on bool, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok {
		return
	}
	m := q.store.at(slot)
	if e.Rcpt == log.NoRcpt {
		for i := range m.rcpts {
			q.detach(slot, int32(i))
		}
		if on {
			m.flags |= msgHeld
		} else {
			// Releasing the message releases its recipients too.
			m.flags &^= msgHeld
			for i := range m.rcpts {
				m.rcpts[i].flags &^= rcptHeld
			}
		}
		for i := range m.rcpts {
			q.attach(slot, int32(i))
		}
		return
	}
	if !q.liveRcpt(slot, e.Rcpt, as) {
		return
	}
	q.detach(slot, e.Rcpt)
	if on {
		m.rcpts[e.Rcpt].flags |= rcptHeld
	} else {
		m.rcpts[e.Rcpt].flags &^= rcptHeld
	}
	q.attach(slot, e.Rcpt)
}

func (q *Queue) applyDelete(e log.Event, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok {
		return
	}
	m := q.store.at(slot)
	targets := []int32{e.Rcpt}
	if e.Rcpt == log.NoRcpt {
		targets = rcptList(m, nil, true)
	} else if e.Rcpt < 0 || int(e.Rcpt) >= len(m.rcpts) || m.rcpts[e.Rcpt].state == StateNone {
		as.add(AnomalyNoRecipient, e.Rcpt, "no such recipient")
		return
	}
	for _, idx := range targets {
		r := &m.rcpts[idx]
		switch {
		case r.state.Live():
			q.finish(slot, idx, StateDeleted, e.Seq, false)
			q.counters.Deleted.add(uint64(max(m.size, 0)))
		case r.flags&rcptDSNOwed != 0:
			// Delete means "without a DSN": the one owed is cancelled.
			r.flags &^= rcptDSNOwed
			q.addRefs(slot, -1)
		case e.Rcpt != log.NoRcpt:
			as.add(AnomalyAfterTerminal, idx, "recipient is already %s (seq %d)", r.state, r.lastSeq)
		}
	}
}

func (q *Queue) applyRequeue(e log.Event, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok {
		return
	}
	m := q.store.at(slot)
	targets := []int32{e.Rcpt}
	if e.Rcpt == log.NoRcpt {
		targets = rcptList(m, nil, true)
	} else if !q.liveRcpt(slot, e.Rcpt, as) {
		return
	}
	now := e.Time.UnixNano()
	for _, idx := range targets {
		r := &m.rcpts[idx]
		if !r.state.Live() {
			continue
		}
		if r.dest != 0 {
			q.dests[r.dest].downUntil, q.dests[r.dest].downSeq = 0, 0
		}
		if r.state != StateDeferred || r.due <= now {
			continue
		}
		q.detach(slot, idx)
		r.due = now
		q.attach(slot, idx)
	}
}

// applyRedirect finishes the recipient the event names as redirected and
// creates recipient NewRcpt at NewAddr in its place; on the whole message
// (Rcpt NoRcpt) every live recipient is redirected and the one new
// recipient takes all their places.
func (q *Queue) applyRedirect(e log.Event, p *log.Redirect, as *anomalies) {
	slot, ok := q.message(e, as)
	if !ok {
		return
	}
	m := q.store.at(slot)
	var live []int32
	if e.Rcpt == log.NoRcpt {
		for i := range m.rcpts {
			if m.rcpts[i].state.Live() {
				live = append(live, int32(i))
			}
		}
		if len(live) == 0 {
			as.add(AnomalyAfterTerminal, log.NoRcpt, "redirect of a message without live recipients")
			return
		}
	} else if !q.liveRcpt(slot, e.Rcpt, as) {
		return
	} else {
		live = []int32{e.Rcpt}
	}
	if p.NewRcpt < 0 || (int(p.NewRcpt) < len(m.rcpts) && m.rcpts[p.NewRcpt].state != StateNone) {
		as.add(AnomalyDuplicate, e.Rcpt, "redirect to index %d, which is taken", p.NewRcpt)
		return
	}
	// The new recipient takes the old one's place: its NOTIFY, its delay
	// warning, its owner and original recipient. In the place of several
	// it keeps the NOTIFY they had in common (none when they differed)
	// and is the message's own: its sender, no ORCPT, not warned.
	first := m.rcpts[live[0]]
	notify, warned := first.notify, first.flags&rcptDelayWarned
	extra := m.extra[live[0]]
	if len(live) > 1 {
		extra, warned = rcptExtra{}, 0
		for _, idx := range live[1:] {
			if m.rcpts[idx].notify != notify {
				notify = 0
			}
		}
	}
	for _, idx := range live {
		q.finish(slot, idx, StateRedirected, e.Seq, false)
	}
	offs := m.appendAddrs([]string{p.NewAddr})
	m.growRcpts(int(p.NewRcpt) + 1)
	m.rcpts[p.NewRcpt] = rcpt{
		due:     e.Time.UnixNano(),
		lastSeq: e.Seq,
		addrOff: offs[0],
		addrLen: uint32(len(p.NewAddr)),
		heapPos: -1,
		state:   StateIncoming,
		notify:  notify,
		flags:   warned,
	}
	m.setExtra(p.NewRcpt, extra)
	q.addRefs(slot, 1)
	q.attach(slot, p.NewRcpt)
}
