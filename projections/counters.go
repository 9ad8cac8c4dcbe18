package projections

import (
	"slices"
	"time"
)

// Tally counts recipients and the bytes of their messages: a message of
// 10 KB delivered to three recipients adds 3 and 30 KB, as mailstats counts
// bytes_to.
type Tally struct {
	Rcpts uint64
	Bytes uint64
}

func (t *Tally) add(size uint64) {
	t.Rcpts++
	t.Bytes += size
}

// Sub returns t minus u, for the difference between two points in the log.
func (t Tally) Sub(u Tally) Tally { return Tally{t.Rcpts - u.Rcpts, t.Bytes - u.Bytes} }

// Received counts what the SMTP server accepted.
type Received struct {
	Msgs  uint64 // transactions (TxnReceived)
	Rcpts uint64 // recipients named at RCPT
	Bytes uint64 // content bytes stored
}

// Counters are the totals of the log from its first event. The difference
// between the counters at two sequence numbers is the traffic between them
// (see Sub).
type Counters struct {
	Received  Received
	Expanded  uint64 // recipients created by alias expansion
	Attempts  uint64 // delivery transactions finished (AttemptFinished)
	Delivered Tally
	Deferred  Tally // deferrals: a recipient deferred three times counts three
	Failed    Tally // permanent failures (bounced)
	Expired   Tally // queue_return_timeout reached (bounced)
	Deleted   Tally // removed by an operator
	DSNs      uint64
}

// Sub returns c minus d.
func (c Counters) Sub(d Counters) Counters {
	return Counters{
		Received: Received{
			Msgs:  c.Received.Msgs - d.Received.Msgs,
			Rcpts: c.Received.Rcpts - d.Received.Rcpts,
			Bytes: c.Received.Bytes - d.Received.Bytes,
		},
		Expanded:  c.Expanded - d.Expanded,
		Attempts:  c.Attempts - d.Attempts,
		Delivered: c.Delivered.Sub(d.Delivered),
		Deferred:  c.Deferred.Sub(d.Deferred),
		Failed:    c.Failed.Sub(d.Failed),
		Expired:   c.Expired.Sub(d.Expired),
		Deleted:   c.Deleted.Sub(d.Deleted),
		DSNs:      c.DSNs - d.DSNs,
	}
}

// DestCounters are the outcomes per destination (the RcptResolved
// Destination, for example "esmtp:[192.0.2.1]:25").
type DestCounters struct {
	Delivered Tally
	Deferred  Tally
	Failed    Tally
	Expired   Tally
}

// Sub returns c minus d.
func (c DestCounters) Sub(d DestCounters) DestCounters {
	return DestCounters{
		Delivered: c.Delivered.Sub(d.Delivered),
		Deferred:  c.Deferred.Sub(d.Deferred),
		Failed:    c.Failed.Sub(d.Failed),
		Expired:   c.Expired.Sub(d.Expired),
	}
}

// IsZero reports whether nothing was counted.
func (c DestCounters) IsZero() bool { return c == DestCounters{} }

// DestStats is one destination's counters and host status.
type DestStats struct {
	Destination string
	Counters    DestCounters
	// DownUntil is when the host status cache lets the destination be
	// tried again; zero when it is not known to be down.
	DownUntil time.Time
}

// Counters returns the totals since the start of the log.
func (q *Queue) Counters() Counters { return q.counters }

// Destinations returns every destination seen, sorted by name, with its
// counters and host status as of the last event applied.
func (q *Queue) Destinations() []DestStats {
	out := make([]DestStats, 0, len(q.dests)-1)
	for _, d := range q.dests[1:] {
		s := DestStats{Destination: d.name, Counters: d.counters}
		if d.downUntil > q.time {
			s.DownUntil = time.Unix(0, d.downUntil).UTC()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b DestStats) int {
		switch {
		case a.Destination < b.Destination:
			return -1
		case a.Destination > b.Destination:
			return 1
		}
		return 0
	})
	return out
}

// HostDownCause returns the sequence number of the RcptDeferred that
// marked destination down (its reason says why), or 0 when the host status
// cache does not have it down.
func (q *Queue) HostDownCause(destination string) uint64 {
	i, ok := q.destByName[destination]
	if !ok || q.dests[i].downUntil == 0 {
		return 0
	}
	return q.dests[i].downSeq
}

// HostDown reports whether the host status cache has destination down at
// now, and until when.
func (q *Queue) HostDown(destination string, now time.Time) (until time.Time, down bool) {
	i, ok := q.destByName[destination]
	if !ok {
		return time.Time{}, false
	}
	d := q.dests[i].downUntil
	if d == 0 || d <= now.UnixNano() {
		return time.Time{}, false
	}
	return time.Unix(0, d).UTC(), true
}
