package projections

import (
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
)

// Queue is the fold of the event log into the queues of seed 004 (IQDB, AQ,
// DEFEDB), the per-message reference counts, the host status cache and the
// counters. Build one with New (an empty log) or Restore (a snapshot), then
// Apply every event in log order.
//
// A Queue is not safe for concurrent use: its owner (the scheduler in smxd,
// the replay engine in smxctl) serialises every call.
//
// The memory layout is driven by the target of at most 300 bytes per queued
// recipient: messages live in one slice addressed by slot number, each
// message keeps its strings (ss_ta, sender, content reference, recipient
// addresses) in one allocation, and a recipient is a 40-byte struct in its
// message's slice. The scheduling indexes are built on first use, so a
// replay that only wants the state as of some point pays nothing for them.
type Queue struct {
	seq  uint64 // last applied
	time int64  // time of the last applied event, Unix nanoseconds

	store messageStore

	dests      []destination // index 0 is "no destination"
	destByName map[string]uint32

	counters Counters

	// releasable holds the slots whose reference count is zero and whose
	// ContentReleased has not been applied yet.
	releasable map[uint32]struct{}

	// Runtime state: not in snapshots, not in dumps of the durable state.
	indexed  bool // the due heaps are built and maintained
	incoming dueHeap
	deferred dueHeap
	active   activeQueue
}

// message is one transaction that still has something in the queue.
type message struct {
	// strs holds, back to back, the ss_ta, the sender, the content
	// reference (unless it equals the ss_ta), DSNOf and then the
	// recipient addresses, which rcpt.addrOff/addrLen point into.
	strs  string
	rcpts []rcpt
	// extra holds what recipients created by expansion or redirect carry
	// beyond the common fields: the list owner and the original
	// recipient. nil for most messages.
	extra      map[int32]rcptExtra
	receivedAt int64
	seq        uint64 // of the TxnReceived
	size       int64
	txnEnd     uint32
	senderEnd  uint32
	contentEnd uint32
	dsnOfEnd   uint32
	refs       int32 // live recipients plus recipients owed a DSN
	flags      uint8
}

const (
	msgHeld           uint8 = 1 << iota // Hold on the whole message
	msgContentIsTxn                     // the content reference equals the ss_ta
	msgContentRemoved                   // ContentReleased applied while still referenced
	msgDoubleBounce                     // a double bounce QMGR made: its failures owe nothing
)

// rcptExtra is what a recipient created by alias expansion (or by a
// redirect of one) carries beyond the common fields.
type rcptExtra struct {
	// owner is the envelope sender named by an owner-LIST entry; "" keeps
	// the message's sender.
	owner string
	// orcpt is the RFC 3461 original recipient the expansion carried over
	// ("rfc822;alias@example.org"); "" when none.
	orcpt string
}

// Listener values of the TxnReceived of the messages QMGR makes itself (the
// field names the smtps section for received mail). The projection tells a
// double bounce, whose failure owes nothing, from any other message from
// the null sender, whose failure owes a double bounce.
const (
	ListenerDSN          = "qmgr-dsn"
	ListenerDoubleBounce = "qmgr-double-bounce"
)

// rcpt is one recipient. Its index in message.rcpts is its index in the
// transaction.
type rcpt struct {
	due     int64  // Unix nanoseconds: when it may next be scheduled
	lastSeq uint64 // the last event that changed its state
	addrOff uint32
	addrLen uint32
	dest    uint32 // index into Queue.dests, 0 when not resolved
	heapPos int32  // position in its due heap, -1 when in none
	state   RcptState
	flags   uint8
	notify  log.Notify
}

const (
	rcptHeld        uint8 = 1 << iota // Hold on this recipient
	rcptClaimed                       // in AQ: taken by the scheduler (runtime only)
	rcptWasDeferred                   // deferred at least once: DEFEDB rather than IQDB
	rcptDelayWarned                   // a delay DSN was sent
	rcptDSNOwed                       // terminal, and a DSN about it is still to be queued

	rcptDurableFlags = rcptHeld | rcptWasDeferred | rcptDelayWarned | rcptDSNOwed
)

// destination is an interned destination with its host status and counters.
type destination struct {
	name      string
	downUntil int64  // Unix nanoseconds; 0 or past means up
	downSeq   uint64 // the RcptDeferred that marked it down, 0 when up
	counters  DestCounters
}

// New returns the projection of an empty log.
func New() *Queue {
	q := &Queue{
		store:      newMessageStore(0),
		dests:      []destination{{}},
		destByName: make(map[string]uint32),
		releasable: make(map[uint32]struct{}),
	}
	q.incoming.q = q
	q.deferred.q = q
	return q
}

// Seq returns the sequence number of the last event applied (or restored
// from a snapshot); 0 for an empty log.
func (q *Queue) Seq() uint64 { return q.seq }

// Time returns the time of the last event applied; the zero time for an
// empty log.
func (q *Queue) Time() time.Time {
	if q.time == 0 {
		return time.Time{}
	}
	return time.Unix(0, q.time).UTC()
}

func (m *message) txn() string    { return m.strs[:m.txnEnd] }
func (m *message) sender() string { return m.strs[m.txnEnd:m.senderEnd] }
func (m *message) dsnOf() string  { return m.strs[m.contentEnd:m.dsnOfEnd] }
func (m *message) addr(r *rcpt) string {
	return m.strs[r.addrOff : r.addrOff+r.addrLen]
}

func (m *message) content() string {
	if m.flags&msgContentIsTxn != 0 {
		return m.txn()
	}
	return m.strs[m.senderEnd:m.contentEnd]
}

// rcptSender is the envelope sender for recipient idx: the list owner when
// an expansion named one, else the message's sender.
func (m *message) rcptSender(idx int32) string {
	if x, ok := m.extra[idx]; ok && x.owner != "" {
		return x.owner
	}
	return m.sender()
}

// setExtra records x for recipient idx; an empty x records nothing.
func (m *message) setExtra(idx int32, x rcptExtra) {
	if x == (rcptExtra{}) {
		return
	}
	if m.extra == nil {
		m.extra = make(map[int32]rcptExtra)
	}
	m.extra[idx] = x
}

// appendAddrs re-allocates m.strs with addrs appended and returns their
// offsets.
func (m *message) appendAddrs(addrs []string) []uint32 {
	var b strings.Builder
	n := len(m.strs)
	for _, a := range addrs {
		n += len(a)
	}
	b.Grow(n)
	b.WriteString(m.strs)
	offs := make([]uint32, len(addrs))
	for i, a := range addrs {
		offs[i] = uint32(b.Len())
		b.WriteString(a)
	}
	m.strs = b.String()
	return offs
}

// growRcpts makes room for n recipients. It allocates exactly: a message
// that grows by expansion grows rarely, and spare capacity in a million
// messages would be memory nobody uses. The due heaps address recipients by
// slot and index, never by pointer, so moving the slice is safe.
func (m *message) growRcpts(n int) {
	if n <= len(m.rcpts) {
		return
	}
	grown := make([]rcpt, n)
	copy(grown, m.rcpts)
	for i := len(m.rcpts); i < n; i++ {
		grown[i].heapPos = -1
	}
	m.rcpts = grown
}

// held reports whether r may not be scheduled because of a Hold on it or
// on its message.
func (m *message) held(r *rcpt) bool {
	return r.flags&rcptHeld != 0 || m.flags&msgHeld != 0
}

// intern returns the index of destination name, adding it if new. The
// empty name is index 0.
func (q *Queue) intern(name string) uint32 {
	if name == "" {
		return 0
	}
	if i, ok := q.destByName[name]; ok {
		return i
	}
	i := uint32(len(q.dests))
	name = strings.Clone(name)
	q.dests = append(q.dests, destination{name: name})
	q.destByName[name] = i
	return i
}

// removeMessage forgets the message in slot: its content is released and
// nothing refers to it.
func (q *Queue) removeMessage(slot uint32) {
	m := q.store.at(slot)
	for i := range m.rcpts {
		q.detach(slot, int32(i))
	}
	delete(q.releasable, slot)
	q.store.remove(slot)
}

// addRefs changes the reference count of the message in slot and keeps the
// releasable set in step.
func (q *Queue) addRefs(slot uint32, delta int32) {
	m := q.store.at(slot)
	m.refs += delta
	if m.refs == 0 && m.flags&msgContentRemoved == 0 {
		q.releasable[slot] = struct{}{}
	} else {
		delete(q.releasable, slot)
	}
}

// detach takes recipient idx of slot out of the runtime indexes before its
// state changes; attach puts it back afterwards.
func (q *Queue) detach(slot uint32, idx int32) {
	r := &q.store.at(slot).rcpts[idx]
	if r.heapPos >= 0 {
		q.heapOf(r).remove(int(r.heapPos))
	}
	if r.flags&rcptClaimed != 0 {
		q.active.remove(r.dest, rcptRef{slot, uint32(idx)})
	}
}

func (q *Queue) attach(slot uint32, idx int32) {
	m := q.store.at(slot)
	r := &m.rcpts[idx]
	if r.flags&rcptClaimed != 0 {
		if !r.state.Live() {
			r.flags &^= rcptClaimed
		} else {
			q.active.add(r.dest, rcptRef{slot, uint32(idx)})
		}
	}
	if q.indexed && r.state.Live() && r.flags&rcptClaimed == 0 && !m.held(r) {
		q.heapOf(r).push(dueEntry{due: r.due, slot: slot, idx: uint32(idx)})
	}
}

// heapOf returns the due heap r belongs in: DEFEDB once it was deferred,
// IQDB before.
func (q *Queue) heapOf(r *rcpt) *dueHeap {
	if r.flags&rcptWasDeferred != 0 {
		return &q.deferred
	}
	return &q.incoming
}

// queueOf names the queue r is in; "" when terminal.
func queueOf(r *rcpt) QueueName {
	switch {
	case !r.state.Live():
		return ""
	case r.flags&rcptClaimed != 0 || r.state == StateResolved || r.state == StateInFlight:
		return AQ
	case r.flags&rcptWasDeferred != 0:
		return DEFEDB
	}
	return IQDB
}

// owesDSN reports whether a recipient reaching terminal state with notify
// and envelope sender is owed a DSN: failures and expiries unless NOTIFY
// excludes FAILURE, deliveries when NOTIFY has SUCCESS and the next server
// could not take the DSN request on (relayed).
//
// Mail from the null sender gets no DSN (RFC 5321 section 4.5.5), but its
// failure is not silent either: a failed bounce (a DSN QMGR made, or one
// that came in from outside) is owed a double bounce, which the scheduler
// sends to double_bounce_address (seed 002), unless the message is itself a
// double bounce, whose failure is dropped and logged: never a loop. Owing
// it here, in the fold, is what makes a crash between the failure and the
// double bounce harmless: the restarted scheduler finds it owed.
func owesDSN(state RcptState, notify log.Notify, sender string, relayed, doubleBounce bool) bool {
	if notify&log.NotifyNever != 0 {
		return false
	}
	switch state {
	case StateFailed, StateExpired:
		if sender == "" && doubleBounce {
			return false
		}
		return notify == 0 || notify&log.NotifyFailure != 0
	case StateDelivered:
		return sender != "" && relayed && notify&log.NotifySuccess != 0
	}
	return false
}
