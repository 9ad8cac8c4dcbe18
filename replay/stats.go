package replay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// Traffic is what happened between two points of the log, counted by the
// projections' counters: the counters after the last event minus those
// before the first.
type Traffic struct {
	// First and Last are the first and last events counted; both zero
	// when the range holds none.
	FirstSeq, LastSeq   uint64
	FirstTime, LastTime time.Time
	Events              int
	Totals              projections.Counters
	// Dests lists the destinations with traffic in the range, by name.
	Dests []DestTraffic
}

// DestTraffic is one destination's share of Traffic.
type DestTraffic struct {
	Destination string
	projections.DestCounters
}

// MeasureTraffic counts the events from from (inclusive; the zero Point is
// the start of the log) to to (inclusive; the zero Point is the end).
func MeasureTraffic(ctx context.Context, src Source, from, to Point) (*Traffic, error) {
	if from.IsEnd() {
		from = Point{Seq: 1}
	}
	r, err := RebuildBefore(ctx, src, from)
	if err != nil {
		return nil, err
	}
	before := r.q.Counters()
	beforeDests := map[string]projections.DestCounters{}
	for _, d := range r.q.Destinations() {
		beforeDests[d.Destination] = d.Counters
	}
	t := &Traffic{}
	err = r.Run(ctx, to, func(e log.Event, _ *projections.Queue) error {
		if t.Events == 0 {
			t.FirstSeq, t.FirstTime = e.Seq, e.Time
		}
		t.LastSeq, t.LastTime = e.Seq, e.Time
		t.Events++
		return nil
	})
	if err != nil {
		return nil, err
	}
	t.Totals = r.q.Counters().Sub(before)
	for _, d := range r.q.Destinations() {
		diff := d.Counters.Sub(beforeDests[d.Destination])
		if !diff.IsZero() {
			t.Dests = append(t.Dests, DestTraffic{d.Destination, diff})
		}
	}
	return t, nil
}

// kb renders bytes as mailstats does: kilobytes, rounded up, with a K.
func kb(n uint64) string { return fmt.Sprintf("%dK", (n+1023)/1024) }

// WriteStats prints t in the spirit of mailstats: one line per destination
// with recipients delivered, bytes delivered, deferrals, bounces and
// expiries, then the totals. Outcomes of recipients that never got a
// destination (a routing failure, a deletion before resolution) are in
// the total and on the "(no destination)" line.
func WriteStats(w io.Writer, t *Traffic, loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	bw := bufio.NewWriter(w)
	if t.Events == 0 {
		fmt.Fprintln(bw, "Statistics: no events in the range")
		return bw.Flush()
	}
	fmt.Fprintf(bw, "Statistics from %s (seq %d) to %s (seq %d), %d events\n",
		t.FirstTime.In(loc).Format(time.RFC3339), t.FirstSeq, t.LastTime.In(loc).Format(time.RFC3339), t.LastSeq, t.Events)
	c := t.Totals
	fmt.Fprintf(bw, " received %d messages, %d recipients, %s; %d recipients by alias expansion\n",
		c.Received.Msgs, c.Received.Rcpts, kb(c.Received.Bytes), c.Expanded)
	width := len("destination")
	for _, d := range t.Dests {
		width = max(width, len(d.Destination))
	}
	width = max(width, len("(no destination)"))
	row := func(name string, d projections.DestCounters) {
		fmt.Fprintf(bw, " %-*s %8d %10s %8d %8d %8d\n", width, name,
			d.Delivered.Rcpts, kb(d.Delivered.Bytes), d.Deferred.Rcpts, d.Failed.Rcpts, d.Expired.Rcpts)
	}
	fmt.Fprintf(bw, " %-*s %8s %10s %8s %8s %8s\n", width, "destination", "msgsto", "bytes_to", "msgsdef", "msgsbnc", "msgsexp")
	var sum projections.DestCounters
	for _, d := range t.Dests {
		row(d.Destination, d.DestCounters)
		sum = addDest(sum, d.DestCounters)
	}
	total := projections.DestCounters{Delivered: c.Delivered, Deferred: c.Deferred, Failed: c.Failed, Expired: c.Expired}
	if rest := total.Sub(sum); !rest.IsZero() {
		row("(no destination)", rest)
	}
	fmt.Fprintf(bw, " %s\n", strings.Repeat("=", width+48))
	row("total", total)
	fmt.Fprintf(bw, " attempts %d, deleted %d, DSNs %d\n", c.Attempts, c.Deleted.Rcpts, c.DSNs)
	return bw.Flush()
}

func addDest(a, b projections.DestCounters) projections.DestCounters {
	add := func(x, y projections.Tally) projections.Tally {
		return projections.Tally{Rcpts: x.Rcpts + y.Rcpts, Bytes: x.Bytes + y.Bytes}
	}
	return projections.DestCounters{
		Delivered: add(a.Delivered, b.Delivered),
		Deferred:  add(a.Deferred, b.Deferred),
		Failed:    add(a.Failed, b.Failed),
		Expired:   add(a.Expired, b.Expired),
	}
}
