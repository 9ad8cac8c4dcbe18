package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/replay/replaytest"
)

// busyDay writes n messages through their lives: most delivered and
// released, some deferred, some bounced, some still in flight.
func busyDay(n int) *replaytest.Builder {
	b := replaytest.New()
	for i := range n {
		txn := fmt.Sprintf("S%016x01", i+1)
		ip := fmt.Sprintf("192.0.2.%d", 1+i%5)
		b.Advance(time.Duration(1+i%7) * time.Second)
		b.Receive(txn, fmt.Sprintf("s%d@example.org", i%3), int64(1000+i), fmt.Sprintf("r%d@d%d.example", i, i%5), "other@example.net")
		b.Resolve(txn, 0, "mx"+ip, ip).Resolve(txn, 1, "mx.example.net", "198.51.100.1")
		switch i % 5 {
		case 0, 1, 2:
			b.Attempt(txn, "mx", ip, 250, 0, 1).Deliver(txn, 0, "mx", ip).Deliver(txn, 1, "mx", "198.51.100.1").Release(txn)
		case 3:
			b.Attempt(txn, "mx", ip, 421, 0).Defer(txn, 0, ip, time.Hour, "421 4.3.0 busy")
			b.Attempt(txn, "mx", ip, 550, 1).Fail(txn, 1, ip, "550 5.1.1 unknown")
			b.Bounce(txn, fmt.Sprintf("S%016x02", i+1), "s@example.org", 1)
		case 4:
			b.Start(txn, "mx", ip, 0, 1)
		}
	}
	return b
}

func openLog(t testing.TB, dir string) *log.Log {
	l, err := log.Open(dir, log.Options{})
	require.NoError(t, err)
	return l
}

// TestRecoverFromRealLog writes a day of mail into a real log with a
// snapshot in the middle, then reads it back read-only as smxctl does: the
// state from snapshot + tail is the state of a full replay, at the end and
// at points before and after the snapshot.
func TestRecoverFromRealLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := busyDay(300)
	all := b.Events()
	mem := &Events{List: all}

	l := openLog(t, dir)
	require.NoError(t, b.WriteTo(ctx, l))
	mid := uint64(len(all) / 2)
	r, err := Rebuild(ctx, FromLog(l), Point{Seq: mid})
	require.NoError(t, err)
	require.Equal(t, mid, r.Queue().Seq())
	require.NoError(t, SaveSnapshot(l, r.Queue()))
	require.NoError(t, l.Close())

	ro, err := log.OpenReadOnly(dir, log.Options{})
	require.NoError(t, err)
	defer ro.Close()
	src := FromLog(ro)

	rec, err := Recover(ctx, src)
	require.NoError(t, err)
	require.Equal(t, mid, rec.FromSnapshot)
	require.Equal(t, len(all)-int(mid), rec.Applied)
	require.Zero(t, rec.AnomalyCount, "%v", rec.Anomalies)
	full, err := Rebuild(ctx, mem, Point{})
	require.NoError(t, err)
	require.Equal(t, dump(full.Queue()), dump(rec.Queue()))
	require.Empty(t, rec.Queue().Check(nil))

	rng := rand.New(rand.NewPCG(4, 4))
	for range 10 {
		at := Point{Seq: 1 + rng.Uint64N(uint64(len(all)))}
		if rng.IntN(2) == 0 {
			at = Point{Time: all[at.Seq-1].Time}
		}
		fromLog, err := Rebuild(ctx, src, at)
		require.NoError(t, err)
		fromMem, err := Rebuild(ctx, &Events{List: all}, at)
		require.NoError(t, err)
		require.Equal(t, dump(fromMem.Queue()), dump(fromLog.Queue()), "at %v", at)
		if at.Seq >= mid {
			require.Equal(t, mid, fromLog.FromSnapshot, "at %v", at)
		} else if at.Seq != 0 {
			require.Zero(t, fromLog.FromSnapshot, "at %v", at)
		}
		before, err := RebuildBefore(ctx, src, at)
		require.NoError(t, err)
		if at.Seq != 0 {
			require.Equal(t, at.Seq-1, before.Queue().Seq())
		} else {
			require.True(t, before.Queue().Time().Before(at.Time) || before.Queue().Seq() == 0)
		}
	}

	rep, err := Verify(ctx, src, nil)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Violations)
	require.Equal(t, mid, rep.SnapshotSeq)
}

// TestRecoveryAfterCrash plays the crash the issue names: smxd stops with
// attempts in flight; the restarted scheduler finds AQ empty and those
// recipients due at once, and never sees a delivered one again.
func TestRecoveryAfterCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := replaytest.New()
	b.Receive("A", "alice@example.org", 100, "x@a.example", "y@a.example", "z@a.example")
	b.Resolve("A", 0, "mx.a", "192.0.2.1").Resolve("A", 1, "mx.a", "192.0.2.1").Resolve("A", 2, "mx.a", "192.0.2.1")
	b.Start("A", "mx.a", "192.0.2.1", 0, 1, 2)
	b.Deliver("A", 0, "mx.a", "192.0.2.1")
	b.Advance(time.Minute)
	b.Defer("A", 2, "192.0.2.1", 2*time.Hour, "421 later")

	l := openLog(t, dir)
	require.NoError(t, b.WriteTo(ctx, l))
	// The snapshot taken at a clean moment before the crash.
	r, err := Rebuild(ctx, FromLog(l), Point{Seq: 4})
	require.NoError(t, err)
	require.NoError(t, SaveSnapshot(l, r.Queue()))
	require.NoError(t, l.Close()) // the process dies; what is durable stays

	l = openLog(t, dir)
	defer l.Close()
	rec, err := Recover(ctx, FromLog(l))
	require.NoError(t, err)
	q := rec.Queue()
	now := b.Now
	require.Equal(t, projections.Sizes{IQDB: 1, AQ: 0, DEFEDB: 1}, q.Sizes())
	due := q.Take(projections.IQDB, now, 10)
	require.Len(t, due, 1)
	require.Equal(t, int32(1), due[0].Rcpt)
	require.Equal(t, projections.StateInFlight, due[0].State, "the interrupted attempt shows as such")
	require.Empty(t, q.Take(projections.DEFEDB, now, 10), "z is not due before its next try")
	require.Len(t, q.Take(projections.DEFEDB, now.Add(2*time.Hour), 10), 1)
	for _, rc := range q.Recipients("A") {
		if rc.Rcpt == 0 {
			require.Equal(t, projections.StateDelivered, rc.State)
			require.False(t, rc.Active)
		}
	}
}

// failingSource breaks at one sequence number as a damaged record would.
type failingSource struct {
	*Events
	at uint64
}

func (s failingSource) Iter(from uint64) Iterator {
	return &failingIter{Iterator: s.Events.Iter(from), at: s.at}
}

type failingIter struct {
	Iterator
	at  uint64
	err error
}

func (it *failingIter) Next() bool {
	if it.err != nil || !it.Iterator.Next() {
		return false
	}
	if it.Iterator.Event().Seq == it.at {
		it.err = &log.RecordError{Seq: it.at, Where: "live log", Err: log.ErrChecksum}
		return false
	}
	return true
}

func (it *failingIter) Err() error { return it.err }

func TestDamagedRecordStops(t *testing.T) {
	ctx := context.Background()
	src := failingSource{Events: &Events{List: busyDay(20).Events()}, at: 37}
	_, err := Recover(ctx, src)
	var re *log.RecordError
	require.ErrorAs(t, err, &re)
	require.Equal(t, uint64(37), re.Seq)

	rep, err := Verify(ctx, src, nil)
	require.NoError(t, err)
	require.False(t, rep.OK())
	require.Equal(t, "damaged-record", rep.Violations[0].Rule)
	require.Equal(t, uint64(37), rep.Violations[0].Seq)
	require.Equal(t, 36, rep.Events)
}

func TestDamagedSnapshotIsSkipped(t *testing.T) {
	ctx := context.Background()
	mem := &Events{List: busyDay(50).Events()}
	good, err := Rebuild(ctx, mem, Point{Seq: 40})
	require.NoError(t, err)
	require.NoError(t, SaveSnapshot(mem, good.Queue()))
	newer, err := Rebuild(ctx, mem, Point{Seq: 80})
	require.NoError(t, err)
	require.NoError(t, SaveSnapshot(mem, newer.Queue()))
	mem.Snapshots[1].Data[10] ^= 0xff

	r, err := Recover(ctx, mem)
	require.NoError(t, err)
	require.Equal(t, uint64(40), r.FromSnapshot)
	require.Len(t, r.SkippedSnapshots, 1)
	require.ErrorIs(t, r.SkippedSnapshots[0], projections.ErrSnapshotCorrupt)

	rep, err := Verify(ctx, mem, nil)
	require.NoError(t, err)
	require.Equal(t, 1, rep.ByRule["snapshot-damaged"], "%v", rep.Violations)
}

func TestParsePoint(t *testing.T) {
	now := time.Date(2025, 3, 2, 10, 0, 0, 0, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		in   string
		want Point
	}{
		{"1234", Point{Seq: 1234}},
		{"2025-03-01T14:05:00Z", Point{Time: time.Date(2025, 3, 1, 14, 5, 0, 0, time.UTC)}},
		{"2025-03-01T14:05:00.5+01:00", Point{Time: time.Date(2025, 3, 1, 13, 5, 0, 5e8, time.UTC)}},
		{"2025-03-01 14:05", Point{Time: time.Date(2025, 3, 1, 14, 5, 0, 0, berlin)}},
		{"2025-03-01 14:05:07", Point{Time: time.Date(2025, 3, 1, 14, 5, 7, 0, berlin)}},
		{"2025-03-01", Point{Time: time.Date(2025, 3, 1, 0, 0, 0, 0, berlin)}},
		{"-90m", Point{Time: now.Add(-90 * time.Minute)}},
	} {
		got, err := ParsePoint(tc.in, now, berlin)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want.Seq, got.Seq, tc.in)
		require.True(t, tc.want.Time.Equal(got.Time), "%s: got %v want %v", tc.in, got.Time, tc.want.Time)
	}
	for _, bad := range []string{"", "0", "yesterday", "-", "-5x", "2025-13-01", "12:00"} {
		_, err := ParsePoint(bad, now, berlin)
		require.Error(t, err, bad)
	}
}

// TestJSONLinesAreStable pins the keys of `smxctl replay --format json`:
// tools parse them.
func TestJSONLinesAreStable(t *testing.T) {
	var b strings.Builder
	e := log.Event{Seq: 7, Time: replaytest.Epoch, Txn: "A", Rcpt: 1, Payload: &log.RcptDeferred{
		NextTry: replaytest.Epoch.Add(time.Hour), Reason: "421 busy", Code: 421, Enhanced: "4.3.0",
		Destination: "esmtp:[192.0.2.1]:25", HostDownUntil: replaytest.Epoch.Add(time.Minute),
	}}
	require.NoError(t, WriteJSON(&b, e, nil))
	require.Equal(t, `{"seq":7,"time":"2025-03-01T12:00:00Z","type":"RcptDeferred","txn":"A","rcpt":1,"payload":{"NextTry":"2025-03-01T13:00:00Z","Reason":"421 busy","Code":421,"Enhanced":"4.3.0","Destination":"esmtp:[192.0.2.1]:25","Host":"","HostDownUntil":"2025-03-01T12:01:00Z"}}`+"\n", b.String())
}

func TestAuditFollowsDSNs(t *testing.T) {
	b := replaytest.New()
	b.Receive("A", "alice@example.org", 100, "x@a.example")
	b.Fail("A", 0, "192.0.2.1", "550 no")
	// The DSN is linked before its own TxnReceived here.
	b.Add("A", log.NoRcpt, &log.DSNQueued{DSN: "B", Kind: log.DSNFailure, Rcpts: []int32{0}})
	b.Add("B", log.NoRcpt, &log.TxnReceived{Sender: "", Rcpts: []log.Recipient{{Addr: "alice@example.org"}}, Content: "B", ReceivedAt: b.Now})
	b.Release("A")
	b.Deliver("B", 0, "mx", "192.0.2.9")
	stories, err := Audit(context.Background(), &Events{List: b.Events()}, "A")
	require.NoError(t, err)
	require.Len(t, stories, 1)
	require.Len(t, stories[0].Events, 4)
	require.Len(t, stories[0].DSNs, 1)
	require.Equal(t, "B", stories[0].DSNs[0].Txn)
	require.Len(t, stories[0].DSNs[0].Events, 2)
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Rebuild(ctx, &Events{List: busyDay(2000).Events()}, Point{})
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
}

// TestReadersSurviveEmptyPayloads: a nil payload pointer of every type must
// not crash the readers.
func TestReadersSurviveEmptyPayloads(t *testing.T) {
	nils := []log.Payload{(*log.TxnReceived)(nil), (*log.RcptResolved)(nil), (*log.AttemptStarted)(nil),
		(*log.AttemptFinished)(nil), (*log.RcptDeferred)(nil), (*log.RcptDelivered)(nil), (*log.RcptFailed)(nil),
		(*log.RcptExpired)(nil), (*log.DelayNotified)(nil), (*log.DSNQueued)(nil), (*log.ContentReleased)(nil),
		(*log.Hold)(nil), (*log.Release)(nil), (*log.Delete)(nil), (*log.Requeue)(nil), (*log.Redirect)(nil), nil}
	b := replaytest.New()
	b.Receive("A", "alice@example.org", 10, "x@a.example")
	for _, p := range nils {
		b.Add("A", 0, p)
	}
	src := &Events{List: b.Events()}
	f := Filter{Rcpt: "x@a.example", Sender: "alice@example.org"}
	r, err := RebuildBefore(context.Background(), src, Point{Seq: 1})
	require.NoError(t, err)
	var out strings.Builder
	require.NoError(t, r.Run(context.Background(), Point{}, func(e log.Event, q *projections.Queue) error {
		f.Match(e, q)
		out.WriteString(Line(e, q) + "\n")
		return WriteJSON(&out, e, q)
	}))
	require.Equal(t, len(nils), r.AnomalyCount)
	stories, err := Audit(context.Background(), src, "A")
	require.NoError(t, err)
	require.NoError(t, WriteStory(&out, stories[0], nil))
	rep, err := Verify(context.Background(), src, nil)
	require.NoError(t, err)
	require.Equal(t, len(nils), rep.ByRule["malformed"], "%v", rep.Violations)
}

// TestHostileTextIsEscaped: a server's reply, a Message-ID or an address
// with terminal control sequences (or bytes that are not UTF-8) reaches
// the operator's terminal escaped in every reader's output.
func TestHostileTextIsEscaped(t *testing.T) {
	const esc = "\x1b]0;owned\x07\x1b[2J\x9b"
	b := replaytest.New()
	b.Add("A", log.NoRcpt, &log.TxnReceived{Sender: "alice" + esc + "@example.org", Rcpts: []log.Recipient{{Addr: "x" + esc + "@a.example"}, {Addr: "y@a.example"}},
		Content: "A", ReceivedAt: b.Now, MessageID: "<id" + esc + "@example.org>"})
	b.Defer("A", 0, "192.0.2.1", time.Hour, "421 4.3.0 "+esc+"try later")
	b.Fail("A", 1, "192.0.2.1", "550 5.1.1 "+esc+"unknown")
	src := &Events{List: b.Events()}

	var out bytes.Buffer
	r, err := Rebuild(context.Background(), src, Point{})
	require.NoError(t, err)
	require.NoError(t, WriteMailq(&out, r.Queue(), src.Get, MailqOptions{Directory: "/q"}))
	stories, err := Audit(context.Background(), src, "A")
	require.NoError(t, err)
	require.Len(t, stories, 1)
	require.NoError(t, WriteStory(&out, stories[0], time.UTC))
	r, err = RebuildBefore(context.Background(), src, Point{Seq: 1})
	require.NoError(t, err)
	require.NoError(t, r.Run(context.Background(), Point{}, func(e log.Event, q *projections.Queue) error {
		out.WriteString(Line(e, q) + "\n")
		return nil
	}))
	text := out.String()
	for _, c := range []string{"\x1b", "\x07", "\x9b"} {
		require.NotContains(t, text, c, "a control character reached the output:\n%q", text)
	}
	require.Contains(t, text, `(Deferred: 421 4.3.0 \x1b]0;owned\x07\x1b[2J\x9btry later)`)
	require.Contains(t, text, `failed: 550 5.1.1 \x1b]0;owned\x07\x1b[2J\x9bunknown`)
	require.Contains(t, text, `Message-ID <id\x1b]0;owned\x07\x1b[2J\x9b@example.org>`)
}
