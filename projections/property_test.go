package projections

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smx-mta/smx/log"
)

// streamGen makes random event streams that look like a day of smxd: mostly
// valid transitions, chosen with the help of a shadow Queue, and now and
// then an event that does not fit (a recipient index out of range, an event
// after a terminal one, a body released too early).
type streamGen struct {
	rng    *rand.Rand
	shadow *Queue
	now    time.Time
	next   int // transaction counter
	events []log.Event
}

func newStreamGen(seed uint64) *streamGen {
	return &streamGen{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), shadow: New(), now: epoch}
}

func (g *streamGen) emit(txn string, rcpt int32, p log.Payload) {
	e := log.Event{Seq: uint64(len(g.events) + 1), Time: g.now, Txn: txn, Rcpt: rcpt, Payload: p}
	g.events = append(g.events, e)
	_ = g.shadow.Apply(e)
}

var genDests = []string{"esmtp:[192.0.2.1]:25", "esmtp:[192.0.2.2]:25", "esmtp:[198.51.100.7]:25", "lmtp:/var/spool/smx/lmtp"}

func (g *streamGen) notify() log.Notify {
	switch g.rng.IntN(6) {
	case 0:
		return log.NotifyNever
	case 1:
		return log.NotifySuccess | log.NotifyFailure
	case 2:
		return log.NotifyFailure | log.NotifyDelay
	}
	return 0
}

func (g *streamGen) receive() {
	g.next++
	txn := fmt.Sprintf("S%016x00", g.next)
	p := &log.TxnReceived{
		Sender:      fmt.Sprintf("s%d@example.org", g.rng.IntN(5)),
		Content:     txn,
		ContentSize: int64(500 + g.rng.IntN(50000)),
		ReceivedAt:  g.now,
	}
	if g.rng.IntN(8) == 0 {
		p.Sender = ""
		// Bounces QMGR made, double bounces, and bounces from outside.
		switch g.rng.IntN(3) {
		case 0:
			p.DSNOf, p.Listener = "S0000000000000000000", ListenerDSN
		case 1:
			p.DSNOf, p.Listener = "S0000000000000000000", ListenerDoubleBounce
		}
	}
	if g.rng.IntN(10) == 0 {
		p.Content = "c-" + txn
	}
	for i := range 1 + g.rng.IntN(4) {
		p.Rcpts = append(p.Rcpts, log.Recipient{Addr: fmt.Sprintf("r%d@d%d.example", i, g.rng.IntN(3)), Notify: g.notify()})
	}
	g.emit(txn, log.NoRcpt, p)
}

// step emits one event.
func (g *streamGen) step() {
	g.now = g.now.Add(time.Duration(g.rng.IntN(600)) * time.Second)
	msgs := g.shadow.Messages()
	if len(msgs) == 0 || g.rng.IntN(6) == 0 {
		g.receive()
		return
	}
	if rel := g.shadow.Releasable(); len(rel) > 0 && g.rng.IntN(3) == 0 {
		m := rel[g.rng.IntN(len(rel))]
		g.emit(m.Txn, log.NoRcpt, &log.ContentReleased{Content: m.Content})
		return
	}
	m := msgs[g.rng.IntN(len(msgs))]
	rcpts := g.shadow.Recipients(m.Txn)
	var live []Recipient
	top := int32(0)
	for _, r := range rcpts {
		if r.State.Live() {
			live = append(live, r)
		}
		top = max(top, r.Rcpt+1)
	}
	pick := func() int32 {
		if len(live) > 0 && g.rng.IntN(12) != 0 {
			return live[g.rng.IntN(len(live))].Rcpt
		}
		return int32(g.rng.IntN(int(top) + 2)) // sometimes terminal, sometimes no such recipient
	}
	op := log.Operator{User: "op"}
	switch g.rng.IntN(20) {
	case 0, 1:
		g.emit(m.Txn, pick(), &log.RcptResolved{Mailer: log.MailerESMTP, Destination: genDests[g.rng.IntN(len(genDests))]})
	case 2:
		p := &log.RcptResolved{}
		if g.rng.IntN(2) == 0 {
			p.Owner = "owner-list@example.org"
		}
		orcpt := ""
		if g.rng.IntN(3) != 0 {
			orcpt = fmt.Sprintf("rfc822;alias%d@example.org", g.rng.IntN(3))
		}
		for i := range g.rng.IntN(3) {
			p.Expansion = append(p.Expansion, log.ExpandedRcpt{Rcpt: top + int32(i), Addr: fmt.Sprintf("x%d@list.example", i), ORCPT: orcpt, Notify: g.notify()})
		}
		g.emit(m.Txn, pick(), p)
	case 3, 4:
		g.emit(m.Txn, log.NoRcpt, &log.AttemptStarted{Rcpts: []int32{pick(), pick()}})
	case 5:
		g.emit(m.Txn, log.NoRcpt, &log.AttemptFinished{Code: 250})
	case 6, 7, 8:
		p := &log.RcptDeferred{NextTry: g.now.Add(time.Duration(g.rng.IntN(7200)) * time.Second)}
		if g.rng.IntN(2) == 0 {
			p.Destination = genDests[g.rng.IntN(len(genDests))]
		}
		if g.rng.IntN(3) == 0 {
			p.HostDownUntil = g.now.Add(time.Duration(g.rng.IntN(3600)) * time.Second)
		}
		g.emit(m.Txn, pick(), p)
	case 9, 10:
		g.emit(m.Txn, pick(), &log.RcptDelivered{Relayed: g.rng.IntN(2) == 0})
	case 11:
		g.emit(m.Txn, pick(), &log.RcptFailed{Code: 550})
	case 12:
		g.emit(m.Txn, pick(), &log.RcptExpired{})
	case 13:
		g.emit(m.Txn, log.NoRcpt, &log.DelayNotified{Rcpts: []int32{pick()}})
	case 14:
		kinds := []string{log.DSNFailure, log.DSNSuccess, log.DSNDelay}
		p := &log.DSNQueued{Kind: kinds[g.rng.IntN(3)], DSN: "dsn"}
		if g.rng.IntN(2) == 0 {
			p.Rcpts = []int32{pick()}
		}
		g.emit(m.Txn, log.NoRcpt, p)
	case 15:
		g.emit(m.Txn, g.msgOrRcpt(pick), &log.Hold{Operator: op})
	case 16:
		g.emit(m.Txn, g.msgOrRcpt(pick), &log.Release{Operator: op})
	case 17:
		g.emit(m.Txn, g.msgOrRcpt(pick), &log.Requeue{Operator: op})
	case 18:
		if g.rng.IntN(4) == 0 {
			g.emit(m.Txn, g.msgOrRcpt(pick), &log.Delete{Operator: op})
		} else {
			g.emit(m.Txn, pick(), &log.RcptDelivered{})
		}
	case 19:
		if g.rng.IntN(10) == 0 {
			g.emit(m.Txn, log.NoRcpt, &log.ContentReleased{Content: m.Content}) // too early
		} else {
			g.emit(m.Txn, g.msgOrRcpt(pick), &log.Redirect{Operator: op, NewAddr: "moved@example.net", NewRcpt: top})
		}
	}
}

func (g *streamGen) msgOrRcpt(pick func() int32) int32 {
	if g.rng.IntN(3) == 0 {
		return log.NoRcpt
	}
	return pick()
}

func genStream(seed uint64, n int) []log.Event {
	g := newStreamGen(seed)
	for len(g.events) < n {
		g.step()
	}
	return g.events
}

func applyAll(q *Queue, events []log.Event) []string {
	var anomalies []string
	for _, e := range events {
		for _, a := range Anomalies(q.Apply(e)) {
			anomalies = append(anomalies, a.Error())
		}
	}
	return anomalies
}

// anomaliesFrom keeps the anomalies of events with Seq above seq.
func anomaliesFrom(all []string, seq uint64) []string {
	var out []string
	for _, a := range all {
		var n uint64
		if _, err := fmt.Sscanf(a, "seq %d", &n); err == nil && n > seq {
			out = append(out, a)
		}
	}
	return out
}

func snapshotBytes(t testing.TB, q *Queue) []byte {
	var b bytes.Buffer
	if err := q.Snapshot(&b); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return b.Bytes()
}

// durableProblems drops the problems a damaged log causes on purpose (a body
// released too early), keeping those that would be bugs of the fold.
func durableProblems(ps []Problem) []Problem {
	return slices.DeleteFunc(ps, func(p Problem) bool {
		return strings.Contains(p.Reason, "released while")
	})
}

// TestPropertyLiveReplayRestore checks the contract of a projection: a
// stream applied live (with a scheduler taking and returning recipients
// between events), replayed from the start, or restored from a snapshot at
// any point and then given the tail, gives the same state, the same
// anomalies and the same snapshot bytes.
func TestPropertyLiveReplayRestore(t *testing.T) {
	streams, length := 100, 400
	if testing.Short() {
		streams = 30
	}
	for seed := range uint64(streams) {
		events := genStream(seed, length)
		rng := rand.New(rand.NewPCG(seed, 99))

		live := New()
		var liveAnomalies []string
		for i, e := range events {
			for _, a := range Anomalies(live.Apply(e)) {
				liveAnomalies = append(liveAnomalies, a.Error())
			}
			if i > length/4 { // first without indexes, then with
				schedulerStep(rng, live, e.Time)
			}
		}
		if ps := durableProblems(live.Check(nil)); len(ps) > 0 {
			t.Fatalf("seed %d: live state breaks invariants: %v", seed, ps)
		}

		replayed := New()
		replayAnomalies := applyAll(replayed, events)
		want := dumpString(replayed)
		if got := dumpString(live); got != want {
			t.Fatalf("seed %d: live and replayed differ\nlive:\n%s\nreplayed:\n%s", seed, got, want)
		}
		if !slices.Equal(liveAnomalies, replayAnomalies) {
			t.Fatalf("seed %d: anomalies differ\nlive: %v\nreplayed: %v", seed, liveAnomalies, replayAnomalies)
		}
		wantSnap := snapshotBytes(t, replayed)
		if !bytes.Equal(snapshotBytes(t, live), wantSnap) {
			t.Fatalf("seed %d: snapshots of live and replayed differ", seed)
		}

		for range 4 {
			k := rng.IntN(len(events) + 1)
			prefix := New()
			applyAll(prefix, events[:k])
			restored, err := RestoreBytes(snapshotBytes(t, prefix))
			if err != nil {
				t.Fatalf("seed %d: restore at %d: %v", seed, k, err)
			}
			if got := dumpString(restored); got != dumpString(prefix) {
				t.Fatalf("seed %d: restore at %d changed the state", seed, k)
			}
			tailAnomalies := applyAll(restored, events[k:])
			if got := dumpString(restored); got != want {
				t.Fatalf("seed %d: restored at %d + tail differs\ngot:\n%s\nwant:\n%s", seed, k, got, want)
			}
			if !bytes.Equal(snapshotBytes(t, restored), wantSnap) {
				t.Fatalf("seed %d: snapshot after restore at %d differs", seed, k)
			}
			if want := anomaliesFrom(replayAnomalies, uint64(k)); !slices.Equal(tailAnomalies, want) {
				t.Fatalf("seed %d: restore at %d: tail anomalies differ\ngot: %v\nwant: %v", seed, k, tailAnomalies, want)
			}
			if ps := durableProblems(restored.Check(nil)); len(ps) > 0 {
				t.Fatalf("seed %d: restored state breaks invariants: %v", seed, ps)
			}
		}
	}
}

// schedulerStep does what a scheduler might between two events: look at the
// queues, take some recipients into AQ, give some back, claim one.
func schedulerStep(rng *rand.Rand, q *Queue, now time.Time) {
	switch rng.IntN(6) {
	case 0:
		q.Take(IQDB, now, rng.IntN(3))
	case 1:
		q.Take(DEFEDB, now.Add(time.Duration(rng.IntN(3600))*time.Second), rng.IntN(3))
	case 2:
		msgs := q.Messages()
		if len(msgs) == 0 {
			return
		}
		m := msgs[rng.IntN(len(msgs))]
		for _, r := range q.Recipients(m.Txn) {
			if r.Active && rng.IntN(2) == 0 {
				q.Untake(r.Txn, r.Rcpt)
			}
		}
	case 3:
		msgs := q.Messages()
		if len(msgs) == 0 {
			return
		}
		m := msgs[rng.IntN(len(msgs))]
		q.Claim(m.Txn, int32(rng.IntN(m.Recipients+1)))
	case 4:
		q.NextDue()
		q.Sizes()
	}
}

// TestTakeOrder checks that the due heaps give recipients in due order and
// that a restored queue offers exactly what the live one would.
func TestTakeOrder(t *testing.T) {
	events := genStream(7, 2000)
	live := New()
	applyAll(live, events)
	restored, err := RestoreBytes(snapshotBytes(t, live))
	if err != nil {
		t.Fatal(err)
	}
	far := events[len(events)-1].Time.Add(48 * time.Hour)
	for _, from := range []QueueName{IQDB, DEFEDB} {
		a := live.Take(from, far, 1<<30)
		b := restored.Take(from, far, 1<<30)
		if len(a) == 0 {
			t.Fatalf("%s: nothing to take in a stream of %d events", from, len(events))
		}
		if len(a) != len(b) {
			t.Fatalf("%s: live offers %d, restored %d", from, len(a), len(b))
		}
		for i := range a {
			if a[i].Txn != b[i].Txn || a[i].Rcpt != b[i].Rcpt {
				t.Fatalf("%s: position %d: live %s:%d, restored %s:%d", from, i, a[i].Txn, a[i].Rcpt, b[i].Txn, b[i].Rcpt)
			}
			if i > 0 && a[i].Due.Before(a[i-1].Due) {
				t.Fatalf("%s: %s:%d due %v offered after one due %v", from, a[i].Txn, a[i].Rcpt, a[i].Due, a[i-1].Due)
			}
			if a[i].Held || !a[i].State.Live() || !a[i].Active {
				t.Fatalf("%s: offered %+v", from, a[i])
			}
		}
	}
	if z := live.Sizes(); z.IQDB != 0 || z.DEFEDB != 0 {
		t.Fatalf("after taking everything: %+v", z)
	}
	if ps := durableProblems(live.Check(nil)); len(ps) > 0 {
		t.Fatal(ps)
	}
}

func TestRestoreRejectsDamage(t *testing.T) {
	q := New()
	applyAll(q, genStream(3, 300))
	snap := snapshotBytes(t, q)
	for _, n := range []int{0, 3, len(snap) / 2, len(snap) - 1} {
		if _, err := RestoreBytes(snap[:n]); err == nil {
			t.Errorf("truncated to %d bytes: restored", n)
		}
	}
	for _, i := range []int{0, 20, len(snap) / 3, len(snap) - 5} {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x40
		if _, err := RestoreBytes(bad); err == nil {
			t.Errorf("flipped a bit at %d: restored", i)
		}
	}
}

// TestIncomingIsAlwaysDue: a scheduler whose clock is behind the clock that
// stamped the events still takes new mail at once; DEFEDB waits for the
// next try.
func TestIncomingIsAlwaysDue(t *testing.T) {
	q := New()
	later := epoch.Add(time.Hour)
	applyAll(q, []log.Event{
		{Seq: 1, Time: later, Txn: "A", Rcpt: log.NoRcpt, Payload: &log.TxnReceived{Rcpts: []log.Recipient{{Addr: "x@a"}, {Addr: "y@b"}}, Content: "A"}},
		{Seq: 2, Time: later, Txn: "A", Rcpt: 1, Payload: &log.RcptDeferred{NextTry: later.Add(time.Minute)}},
	})
	if got := q.Take(IQDB, epoch, 10); len(got) != 1 || got[0].Rcpt != 0 {
		t.Fatalf("IQDB gave %+v", got)
	}
	if got := q.Take(DEFEDB, later, 10); len(got) != 0 {
		t.Fatalf("DEFEDB gave %+v before the next try", got)
	}
	if got := q.Take(DEFEDB, later.Add(time.Minute), 10); len(got) != 1 {
		t.Fatalf("DEFEDB gave %+v at the next try", got)
	}
}
