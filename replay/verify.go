package replay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strings"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// Violation is one broken invariant found by Verify.
type Violation struct {
	// Rule names the invariant, for example "second-terminal" (see
	// Verify for the list).
	Rule string
	// Seq is the event where it broke; 0 for a problem of the final
	// state.
	Seq    uint64
	Txn    string
	Rcpt   int32 // log.NoRcpt when it concerns the whole message
	Detail string
}

// String renders v as one line of the report.
func (v Violation) String() string {
	where := v.Txn
	if v.Rcpt != log.NoRcpt && v.Txn != "" {
		where = fmt.Sprintf("%s:%d", v.Txn, v.Rcpt)
	}
	at := "end of log"
	if v.Seq != 0 {
		at = fmt.Sprintf("seq %d", v.Seq)
	}
	if where == "" {
		return fmt.Sprintf("%s: %s: %s", at, v.Rule, v.Detail)
	}
	return fmt.Sprintf("%s: %s: %s: %s", at, v.Rule, where, v.Detail)
}

// MaxViolations is how many violations a Report lists; it counts them all.
const MaxViolations = 1000

// Report is the outcome of Verify.
type Report struct {
	Events   int    // events read
	LastSeq  uint64 // last event read
	Messages int    // messages still in the queue at the end
	Live     int    // recipients still to be delivered at the end
	// SnapshotSeq is the newest snapshot, compared with the replayed
	// state at its sequence number; 0 when there is none.
	SnapshotSeq uint64
	Violations  []Violation
	Count       int            // all violations, listed or not
	ByRule      map[string]int // violations per rule
}

// OK reports whether every invariant holds.
func (r *Report) OK() bool { return r.Count == 0 }

func (r *Report) add(v Violation) {
	if len(r.Violations) < MaxViolations {
		r.Violations = append(r.Violations, v)
	}
	r.Count++
	if r.ByRule == nil {
		r.ByRule = map[string]int{}
	}
	r.ByRule[v.Rule]++
}

// Verify reads the whole log from its first event and checks the
// invariants of the queue:
//
//   - second-terminal: a recipient has at most one terminal event
//     (delivered, failed, expired, deleted, redirected, expanded);
//   - after-terminal: no other event concerns a recipient after its
//     terminal event;
//   - after-release: no event concerns a message after its ContentReleased;
//   - unknown-transaction, no-such-recipient: every event concerns a
//     received transaction and an existing recipient;
//   - content-released-early: ContentReleased only once nothing needs the
//     body;
//   - duplicate, second-delay-warning, gap, malformed: the other anomalies
//     of the projections (package projections, Anomaly);
//   - refcount, releasable: at the end, every message's reference count
//     matches its recipients;
//   - body-missing, body-released: at the end, every message still
//     referenced has its body in the content store (exists, the content
//     store's Exists; nil skips the store check);
//   - snapshot-mismatch, snapshot-damaged: the newest snapshot holds
//     exactly the state the log gives at its sequence number;
//   - damaged-record: a record that cannot be read ends the check.
//
// The error is for failures to read at all (a canceled ctx); a damaged
// record is a violation in the report.
func Verify(ctx context.Context, src Source, exists func(content string) bool) (*Report, error) {
	rep := &Report{}
	r := &Replay{src: src, q: projections.New()}

	var snap *projections.Queue
	latest, err := src.LatestSnapshot(func(seq uint64, data []byte) error {
		q, err := projections.RestoreBytes(data)
		if err != nil {
			return err
		}
		if q.Seq() != seq {
			return fmt.Errorf("stored as the snapshot at %d but holds the state at %d", seq, q.Seq())
		}
		snap = q
		return nil
	})
	for _, skipped := range latest.Skipped {
		rep.add(Violation{Rule: "snapshot-damaged", Rcpt: log.NoRcpt, Detail: skipped.Error()})
	}
	if err != nil && !errors.Is(err, log.ErrNoSnapshot) {
		return nil, fmt.Errorf("replay: verify: read snapshots: %w", err)
	}

	seed := maphash.MakeSeed()
	released := map[uint64]uint64{} // hash of ss_ta -> seq of its ContentReleased
	r.onAnomaly = func(a *projections.Anomaly, e log.Event) {
		rep.add(classify(a, e, released, seed))
	}
	r.afterApply = func(e log.Event, q *projections.Queue) {
		rep.Events++
		rep.LastSeq = e.Seq
		if _, ok := e.Payload.(*log.ContentReleased); ok {
			if _, still := q.Message(e.Txn); !still {
				released[maphash.String(seed, e.Txn)] = e.Seq
			}
		}
	}
	run := func(to Point) error { return r.Run(ctx, to, nil) }
	if snap != nil {
		rep.SnapshotSeq = snap.Seq()
		if err := run(Point{Seq: snap.Seq()}); err != nil {
			return rep, damaged(rep, err)
		}
		if r.q.Seq() == snap.Seq() {
			if a, b := dump(r.q), dump(snap); a != b {
				rep.add(Violation{Rule: "snapshot-mismatch", Seq: snap.Seq(), Rcpt: log.NoRcpt,
					Detail: "the snapshot differs from the state the log gives: " + firstDifference(a, b)})
			}
		} else {
			rep.add(Violation{Rule: "snapshot-mismatch", Seq: snap.Seq(), Rcpt: log.NoRcpt,
				Detail: fmt.Sprintf("the snapshot covers seq %d but the log ends at %d", snap.Seq(), r.q.Seq())})
		}
	}
	if err := run(Point{}); err != nil {
		return rep, damaged(rep, err)
	}
	for _, p := range r.q.Check(exists) {
		rep.add(Violation{Rule: p.Rule, Txn: p.Txn, Rcpt: p.Rcpt, Detail: p.Reason})
	}
	for _, m := range r.q.Messages() {
		rep.Messages++
		rep.Live += m.Live
	}
	return rep, nil
}

// damaged turns a read error into a damaged-record violation; a canceled
// context stays an error.
func damaged(rep *Report, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	v := Violation{Rule: "damaged-record", Rcpt: log.NoRcpt, Detail: err.Error()}
	var re *log.RecordError
	if errors.As(err, &re) {
		v.Seq = re.Seq
	}
	rep.add(v)
	return nil
}

// terminalTypes are the events that end a recipient.
var terminalTypes = []log.EventType{log.TypeRcptDelivered, log.TypeRcptFailed, log.TypeRcptExpired, log.TypeDelete, log.TypeRedirect}

// classify turns an anomaly into a violation with the rule it breaks.
func classify(a *projections.Anomaly, e log.Event, released map[uint64]uint64, seed maphash.Seed) Violation {
	v := Violation{Rule: a.Kind.String(), Seq: a.Seq, Txn: a.Txn, Rcpt: a.Rcpt,
		Detail: fmt.Sprintf("%s: %s", a.Type, a.Reason)}
	switch a.Kind {
	case projections.AnomalyAfterTerminal:
		terminal := slices.Contains(terminalTypes, a.Type)
		if p, ok := e.Payload.(*log.RcptResolved); ok && p != nil && p.Mailer == "" {
			terminal = true
		}
		if terminal {
			v.Rule = "second-terminal"
		}
	case projections.AnomalyUnknownTxn:
		if seq, ok := released[maphash.String(seed, a.Txn)]; ok {
			v.Rule = "after-release"
			v.Detail = fmt.Sprintf("%s after the message's content was released at seq %d", a.Type, seq)
		}
	}
	return v
}

func dump(q *projections.Queue) string {
	var b strings.Builder
	_ = q.Dump(&b, projections.DumpOptions{})
	return b.String()
}

// firstDifference names the first line where two dumps differ.
func firstDifference(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(la), len(lb)); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("log says %q, snapshot says %q", x, y)
		}
	}
	return "no line differs"
}

// WriteReport prints rep for `smxctl verify`: a summary line, the count per
// rule, then each violation listed.
func WriteReport(w io.Writer, rep *Report) error {
	bw := bufio.NewWriter(w)
	status := "OK"
	if !rep.OK() {
		status = fmt.Sprintf("FAILED: %d violations", rep.Count)
	}
	fmt.Fprintf(bw, "verify: %s: %d events up to seq %d; %d messages and %d recipients queued at the end",
		status, rep.Events, rep.LastSeq, rep.Messages, rep.Live)
	if rep.SnapshotSeq != 0 {
		fmt.Fprintf(bw, "; snapshot at seq %d checked", rep.SnapshotSeq)
	}
	fmt.Fprintln(bw)
	rules := make([]string, 0, len(rep.ByRule))
	for rule := range rep.ByRule {
		rules = append(rules, rule)
	}
	slices.Sort(rules)
	for _, rule := range rules {
		fmt.Fprintf(bw, "  %-24s %d\n", rule, rep.ByRule[rule])
	}
	for _, v := range rep.Violations {
		fmt.Fprintln(bw, v)
	}
	if rep.Count > len(rep.Violations) {
		fmt.Fprintf(bw, "(%d more not listed)\n", rep.Count-len(rep.Violations))
	}
	return bw.Flush()
}
