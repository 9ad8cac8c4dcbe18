package projections

import (
	"math"
	"slices"
	"time"

	"github.com/smx-mta/smx/log"
)

// Recipient is a copy of one recipient's state, as the scheduler, mailq and
// the dumps see it.
type Recipient struct {
	Txn  string // ss_ta of its message
	Rcpt int32  // index within the transaction
	Addr string
	// Sender is the envelope sender to use for this recipient and to send
	// its DSNs to: the message's sender, or the list owner an expansion
	// named.
	Sender string
	Notify log.Notify
	// ORCPT is the RFC 3461 original recipient an alias expansion carried
	// over to the recipient it created ("rfc822;alias@example.org"), kept
	// through a redirect. It is "" for the recipients named at RCPT: their
	// ORCPT is in the message's TxnReceived.
	ORCPT string
	State RcptState
	// Queue is the queue the recipient is in ("" when terminal): AQ when
	// the scheduler took it or the log shows it resolved or in flight,
	// else DEFEDB once it was deferred, else IQDB.
	Queue QueueName
	// Due is when it may be scheduled: when it entered IQDB, or its next
	// try in DEFEDB. It is meaningful for live recipients only.
	Due time.Time
	// Held is true when a Hold on the recipient or its message stops its
	// scheduling.
	Held bool
	// Active is true while the scheduler holds it in AQ (Take or Claim);
	// never true in a Queue rebuilt from the log.
	Active      bool
	DelayWarned bool // a delay DSN was sent for it
	// DSNOwed is true for a terminal recipient whose DSN (failure or
	// success, see the package doc) has not been queued yet.
	DSNOwed bool
	// Destination is the last one RcptResolved or RcptDeferred named.
	Destination string
	// LastSeq is the event that last changed the recipient's state: its
	// reply text, reason or resolution is in that event (log.Get).
	LastSeq uint64
}

// Message is a copy of one message's state.
type Message struct {
	Txn     string // ss_ta
	Sender  string
	Content string // content store reference of the body
	DSNOf   string // ss_ta of the message a DSN reports on; "" otherwise
	// DoubleBounce is true for a double bounce QMGR made (DSNOf set,
	// Listener ListenerDoubleBounce): a failure of it owes nothing.
	DoubleBounce bool
	Size         int64 // ContentSize
	ReceivedAt   time.Time
	Seq          uint64 // the TxnReceived event
	Held         bool   // a Hold on the whole message
	// ContentReleased is true when a ContentReleased was applied while
	// recipients still referenced the body (an anomaly: the body is gone).
	ContentReleased bool
	Recipients      int // recipients, including terminal ones
	Live            int // recipients still to be delivered
	DSNOwed         int // terminal recipients whose DSN is not queued yet
}

// RefCount is what keeps the body alive: live recipients plus DSNs still to
// be built from it. At zero the scheduler appends ContentReleased and asks
// the content store to release the body.
func (m Message) RefCount() int { return m.Live + m.DSNOwed }

func (q *Queue) messageView(slot uint32) Message {
	m := q.store.at(slot)
	v := Message{
		Txn:             m.txn(),
		Sender:          m.sender(),
		Content:         m.content(),
		DSNOf:           m.dsnOf(),
		DoubleBounce:    m.flags&msgDoubleBounce != 0,
		Size:            m.size,
		ReceivedAt:      time.Unix(0, m.receivedAt).UTC(),
		Seq:             m.seq,
		Held:            m.flags&msgHeld != 0,
		ContentReleased: m.flags&msgContentRemoved != 0,
	}
	for i := range m.rcpts {
		r := &m.rcpts[i]
		switch {
		case r.state == StateNone:
			continue
		case r.state.Live():
			v.Live++
		case r.flags&rcptDSNOwed != 0:
			v.DSNOwed++
		}
		v.Recipients++
	}
	return v
}

func (q *Queue) rcptView(slot uint32, idx int32) Recipient {
	m := q.store.at(slot)
	r := &m.rcpts[idx]
	return Recipient{
		Txn:         m.txn(),
		Rcpt:        idx,
		Addr:        m.addr(r),
		Sender:      m.rcptSender(idx),
		Notify:      r.notify,
		ORCPT:       m.extra[idx].orcpt,
		State:       r.state,
		Queue:       queueOf(r),
		Due:         time.Unix(0, r.due).UTC(),
		Held:        m.held(r),
		Active:      r.flags&rcptClaimed != 0,
		DelayWarned: r.flags&rcptDelayWarned != 0,
		DSNOwed:     r.flags&rcptDSNOwed != 0,
		Destination: q.dests[r.dest].name,
		LastSeq:     r.lastSeq,
	}
}

// Message returns the message with ss_ta txn, if it is still in the queue.
func (q *Queue) Message(txn string) (Message, bool) {
	slot, ok := q.store.lookup(txn)
	if !ok {
		return Message{}, false
	}
	return q.messageView(slot), true
}

// Recipients returns every recipient of message txn in index order,
// terminal ones included; nil when the message is not in the queue.
func (q *Queue) Recipients(txn string) []Recipient {
	slot, ok := q.store.lookup(txn)
	if !ok {
		return nil
	}
	m := q.store.at(slot)
	out := make([]Recipient, 0, len(m.rcpts))
	for i := range m.rcpts {
		if m.rcpts[i].state != StateNone {
			out = append(out, q.rcptView(slot, int32(i)))
		}
	}
	return out
}

// Recipient returns recipient idx of message txn.
func (q *Queue) Recipient(txn string, idx int32) (Recipient, bool) {
	slot, ok := q.store.lookup(txn)
	if !ok {
		return Recipient{}, false
	}
	m := q.store.at(slot)
	if idx < 0 || int(idx) >= len(m.rcpts) || m.rcpts[idx].state == StateNone {
		return Recipient{}, false
	}
	return q.rcptView(slot, idx), true
}

// Scan calls fn for every message in the queue with its recipients
// (terminal ones included, in index order), in no particular order, until
// fn returns false. It builds no list: rcpts is reused from one call to
// the next and fn must not keep it. It is for passes over the whole queue
// that look at most messages and keep few, such as the scheduler's look
// at what a restart left undone.
func (q *Queue) Scan(fn func(m Message, rcpts []Recipient) bool) {
	var rcpts []Recipient
	stop := false
	q.store.slots(func(slot uint32) {
		if stop {
			return
		}
		m := q.store.at(slot)
		rcpts = rcpts[:0]
		for i := range m.rcpts {
			if m.rcpts[i].state != StateNone {
				rcpts = append(rcpts, q.rcptView(slot, int32(i)))
			}
		}
		stop = !fn(q.messageView(slot), rcpts)
	})
}

// Messages returns every message in the queue in the order received.
func (q *Queue) Messages() []Message {
	slots := q.slotsBySeq()
	out := make([]Message, len(slots))
	for i, slot := range slots {
		out[i] = q.messageView(slot)
	}
	return out
}

// slotsBySeq returns the occupied slots in the order of their TxnReceived.
func (q *Queue) slotsBySeq() []uint32 {
	slots := make([]uint32, 0, q.store.count)
	q.store.slots(func(slot uint32) { slots = append(slots, slot) })
	slices.SortFunc(slots, func(a, b uint32) int {
		sa, sb := q.store.at(a).seq, q.store.at(b).seq
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
	return slots
}

// Sizes counts the recipients by queue, for the scheduler's thresholds.
type Sizes struct {
	// IQDB and DEFEDB count the recipients the scheduler could take:
	// live, not held, not in AQ, due or not.
	IQDB   int
	DEFEDB int
	// AQ counts the recipients the scheduler holds (Take or Claim).
	AQ int
}

// Sizes returns the queue sizes in constant time (after the first call,
// which builds the scheduling index).
func (q *Queue) Sizes() Sizes {
	q.ensureIndex()
	return Sizes{IQDB: q.incoming.len(), DEFEDB: q.deferred.len(), AQ: q.active.n}
}

// NextDue returns the earliest due time among the recipients the scheduler
// could take from IQDB or DEFEDB; ok is false when there are none. A
// scheduler sleeps until then or until new events arrive.
func (q *Queue) NextDue() (due time.Time, ok bool) {
	q.ensureIndex()
	a, okA := q.incoming.peek()
	b, okB := q.deferred.peek()
	switch {
	case okA && (!okB || a.due <= b.due):
		return time.Unix(0, a.due).UTC(), true
	case okB:
		return time.Unix(0, b.due).UTC(), true
	}
	return time.Time{}, false
}

// NextDueIn is NextDue for one queue, IQDB or DEFEDB.
func (q *Queue) NextDueIn(from QueueName) (due time.Time, ok bool) {
	q.ensureIndex()
	h := q.heapNamed(from)
	if h == nil {
		return time.Time{}, false
	}
	e, ok := h.peek()
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, e.due).UTC(), true
}

func (q *Queue) heapNamed(name QueueName) *dueHeap {
	switch name {
	case IQDB:
		return &q.incoming
	case DEFEDB:
		return &q.deferred
	}
	return nil
}

// Take moves up to max recipients that are due at now from IQDB or DEFEDB
// into AQ and returns them, the earliest due first (IQDB: oldest first;
// DEFEDB: earliest next try first). Every recipient in IQDB is due: its due
// time only orders it, so that a clock a little behind the one that
// stamped the events does not hold new mail back. Taking is not an event: AQ is the
// scheduler's working set and is empty again after a restart. A taken
// recipient leaves AQ when an event defers it or makes it terminal, or when
// the scheduler calls Untake.
func (q *Queue) Take(from QueueName, now time.Time, max int) []Recipient {
	q.ensureIndex()
	h := q.heapNamed(from)
	if h == nil {
		return nil
	}
	limit := now.UnixNano()
	if from == IQDB {
		limit = math.MaxInt64
	}
	var out []Recipient
	for len(out) < max {
		e, ok := h.peek()
		if !ok || e.due > limit {
			break
		}
		h.remove(0)
		r := &q.store.at(e.slot).rcpts[e.idx]
		r.flags |= rcptClaimed
		q.active.add(r.dest, rcptRef{e.slot, e.idx})
		out = append(out, q.rcptView(e.slot, int32(e.idx)))
	}
	return out
}

// Claim moves one recipient into AQ whatever its due time, for example to
// send it over a connection that is open to its destination. It reports
// false when the recipient is not live, is held, or is in AQ already.
func (q *Queue) Claim(txn string, idx int32) bool {
	q.ensureIndex()
	slot, ok := q.store.lookup(txn)
	if !ok {
		return false
	}
	m := q.store.at(slot)
	if idx < 0 || int(idx) >= len(m.rcpts) {
		return false
	}
	r := &m.rcpts[idx]
	if !r.state.Live() || r.flags&rcptClaimed != 0 || m.held(r) {
		return false
	}
	q.detach(slot, idx)
	r.flags |= rcptClaimed
	q.attach(slot, idx)
	return true
}

// Untake puts a recipient the scheduler took back where it came from, due
// as before, without an event: for a recipient AQ had to drop before any
// attempt. It reports false when the recipient was not in AQ.
func (q *Queue) Untake(txn string, idx int32) bool {
	slot, ok := q.store.lookup(txn)
	if !ok {
		return false
	}
	m := q.store.at(slot)
	if idx < 0 || int(idx) >= len(m.rcpts) || m.rcpts[idx].flags&rcptClaimed == 0 {
		return false
	}
	q.detach(slot, idx)
	m.rcpts[idx].flags &^= rcptClaimed
	q.attach(slot, idx)
	return true
}

// Active returns the recipients in AQ whose destination is destination
// (use "" for those not resolved yet), in the order received.
func (q *Queue) Active(destination string) []Recipient {
	dest := uint32(0)
	if destination != "" {
		i, ok := q.destByName[destination]
		if !ok {
			return nil
		}
		dest = i
	}
	refs := q.active.refs(dest)
	q.sortRefs(refs)
	out := make([]Recipient, len(refs))
	for i, ref := range refs {
		out[i] = q.rcptView(ref.slot, int32(ref.idx))
	}
	return out
}

// Releasable returns the messages whose reference count is zero and whose
// ContentReleased is not in the log yet, in the order received. After a
// restart it also lists the messages whose release was interrupted.
func (q *Queue) Releasable() []Message {
	slots := make([]uint32, 0, len(q.releasable))
	for slot := range q.releasable {
		slots = append(slots, slot)
	}
	slices.SortFunc(slots, func(a, b uint32) int {
		switch sa, sb := q.store.at(a).seq, q.store.at(b).seq; {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
	out := make([]Message, len(slots))
	for i, slot := range slots {
		out[i] = q.messageView(slot)
	}
	return out
}

// Finished answers the log's Archive (log.FinishedFunc): a message is
// finished once the queue no longer holds it, that is once its
// ContentReleased was applied (or when it was never received). The queue
// does not remember when a message left, so the time is zero, and Archive
// moves a finished message's events once they are themselves older than
// ArchiveAfter. Like every method it must be called from the goroutine that
// owns the Queue.
func (q *Queue) Finished(txn string) (finishedAt time.Time, finished bool) {
	_, held := q.store.lookup(txn)
	return time.Time{}, !held
}
