package projections

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
)

// DumpOptions choose how Dump and DumpQueue print.
type DumpOptions struct {
	// Time formats a time; nil prints RFC 3339 in UTC with nanoseconds.
	Time func(time.Time) string
	// Active marks the recipients the scheduler holds in AQ. Leave it
	// false to print the durable state only, which is the same whether the
	// queue was built live, replayed or restored.
	Active bool
}

func (o DumpOptions) time(ns int64) string {
	t := time.Unix(0, ns).UTC()
	if o.Time != nil {
		return o.Time(t)
	}
	return t.Format(time.RFC3339Nano)
}

// NotifyString renders n as the NOTIFY parameter would: "SUCCESS,DELAY",
// or "" when NOTIFY was not given.
func NotifyString(n log.Notify) string {
	var parts []string
	for _, f := range []struct {
		bit  log.Notify
		name string
	}{{log.NotifyNever, "NEVER"}, {log.NotifySuccess, "SUCCESS"}, {log.NotifyFailure, "FAILURE"}, {log.NotifyDelay, "DELAY"}} {
		if n&f.bit != 0 {
			parts = append(parts, f.name)
		}
	}
	return strings.Join(parts, ",")
}

// Dump writes the whole state as text, one message after another in the
// order received, then the destinations and the counters. The output
// depends on the events applied alone (and on AQ when opt.Active), so two
// queues hold the same state exactly when their dumps are equal.
func (q *Queue) Dump(w io.Writer, opt DumpOptions) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "seq %d time %s\n", q.seq, opt.time(q.time))
	for _, slot := range q.slotsBySeq() {
		q.dumpMessage(bw, slot, opt)
	}
	for _, d := range q.dests[1:] {
		if d.downUntil <= q.time && d.counters.IsZero() {
			continue
		}
		fmt.Fprintf(bw, "destination %s", d.name)
		if d.downUntil > q.time {
			fmt.Fprintf(bw, " down-until %s (seq %d)", opt.time(d.downUntil), d.downSeq)
		}
		c := d.counters
		fmt.Fprintf(bw, " delivered %s deferred %s failed %s expired %s\n",
			tallyString(c.Delivered), tallyString(c.Deferred), tallyString(c.Failed), tallyString(c.Expired))
	}
	c := q.counters
	fmt.Fprintf(bw, "counters received %d/%d/%d expanded %d attempts %d delivered %s deferred %s failed %s expired %s deleted %s dsns %d\n",
		c.Received.Msgs, c.Received.Rcpts, c.Received.Bytes, c.Expanded, c.Attempts,
		tallyString(c.Delivered), tallyString(c.Deferred), tallyString(c.Failed),
		tallyString(c.Expired), tallyString(c.Deleted), c.DSNs)
	return bw.Flush()
}

func tallyString(t Tally) string { return fmt.Sprintf("%d/%d", t.Rcpts, t.Bytes) }

func (q *Queue) dumpMessage(w io.Writer, slot uint32, opt DumpOptions) {
	m := q.store.at(slot)
	fmt.Fprintf(w, "message %s from <%s> size %d received %s seq %d refs %d",
		m.txn(), m.sender(), m.size, opt.time(m.receivedAt), m.seq, m.refs)
	if m.content() != m.txn() {
		fmt.Fprintf(w, " content %s", m.content())
	}
	if m.dsnOf() != "" {
		fmt.Fprintf(w, " dsn-of %s", m.dsnOf())
	}
	if m.flags&msgDoubleBounce != 0 {
		fmt.Fprint(w, " double-bounce")
	}
	if m.flags&msgHeld != 0 {
		fmt.Fprint(w, " held")
	}
	if m.flags&msgContentRemoved != 0 {
		fmt.Fprint(w, " content-released")
	}
	fmt.Fprintln(w)
	for i := range m.rcpts {
		if m.rcpts[i].state == StateNone {
			continue
		}
		fmt.Fprint(w, "  ")
		q.dumpRcpt(w, slot, int32(i), opt, false)
	}
}

// dumpRcpt prints one recipient line; withTxn prefixes it with ss_ta:index
// for queue listings.
func (q *Queue) dumpRcpt(w io.Writer, slot uint32, idx int32, opt DumpOptions, withTxn bool) {
	m := q.store.at(slot)
	r := &m.rcpts[idx]
	if withTxn {
		fmt.Fprintf(w, "%s:%d", m.txn(), idx)
	} else {
		fmt.Fprintf(w, "%d", idx)
	}
	fmt.Fprintf(w, " <%s> %s", m.addr(r), r.state)
	if r.state.Live() {
		name := queueOf(r)
		if !opt.Active && r.flags&rcptClaimed != 0 {
			// Durable view: where the recipient is without AQ.
			cp := *r
			cp.flags &^= rcptClaimed
			name = queueOf(&cp)
		}
		fmt.Fprintf(w, " %s due %s", name, opt.time(r.due))
	}
	if r.dest != 0 {
		fmt.Fprintf(w, " dest %s", q.dests[r.dest].name)
	}
	if n := NotifyString(r.notify); n != "" {
		fmt.Fprintf(w, " notify %s", n)
	}
	if x := m.extra[idx]; x.owner != "" {
		fmt.Fprintf(w, " owner <%s>", x.owner)
	}
	if x := m.extra[idx]; x.orcpt != "" {
		fmt.Fprintf(w, " orcpt %s", x.orcpt)
	}
	if r.flags&rcptHeld != 0 || (withTxn && m.flags&msgHeld != 0) {
		// In a queue listing the message's hold shows on each line.
		fmt.Fprint(w, " held")
	}
	if r.flags&rcptDelayWarned != 0 {
		fmt.Fprint(w, " warned")
	}
	if r.flags&rcptDSNOwed != 0 {
		fmt.Fprint(w, " dsn-owed")
	}
	if opt.Active && r.flags&rcptClaimed != 0 {
		fmt.Fprint(w, " active")
	}
	fmt.Fprintf(w, " last %d\n", r.lastSeq)
}

// DumpQueue lists the live recipients in one queue, one a line as
// "ss_ta:index <addr> state ...". IQDB and DEFEDB come in the order the
// scheduler takes them (held recipients included and marked); AQ in the
// order received. With opt.Active false, AQ holds the recipients the log
// shows resolved or in flight.
func (q *Queue) DumpQueue(w io.Writer, name QueueName, opt DumpOptions) error {
	bw := bufio.NewWriter(w)
	var refs []rcptRef
	q.store.slots(func(slot uint32) {
		m := q.store.at(slot)
		for idx := range m.rcpts {
			r := &m.rcpts[idx]
			if !r.state.Live() {
				continue
			}
			in := queueOf(r)
			if !opt.Active && r.flags&rcptClaimed != 0 {
				cp := *r
				cp.flags &^= rcptClaimed
				in = queueOf(&cp)
			}
			if in == name {
				refs = append(refs, rcptRef{slot, uint32(idx)})
			}
		}
	})
	if name == AQ {
		q.sortRefs(refs)
	} else {
		slices.SortFunc(refs, func(a, b rcptRef) int {
			ra, rb := &q.store.at(a.slot).rcpts[a.idx], &q.store.at(b.slot).rcpts[b.idx]
			switch {
			case ra.due != rb.due:
				return cmpInt(ra.due, rb.due)
			case ra.lastSeq != rb.lastSeq:
				return cmpInt(ra.lastSeq, rb.lastSeq)
			}
			return cmpInt(a.idx, b.idx)
		})
	}
	fmt.Fprintf(bw, "%s %d\n", name, len(refs))
	for _, ref := range refs {
		fmt.Fprint(bw, "  ")
		q.dumpRcpt(bw, ref.slot, int32(ref.idx), opt, true)
	}
	return bw.Flush()
}

func cmpInt[T int64 | uint64 | uint32](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
