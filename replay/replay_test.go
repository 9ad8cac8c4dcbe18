package replay

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/replay/replaytest"
)

// script runs the data-driven tests in testdata/: the first commands write
// a log with a replaytest.Builder, the others read it as smxctl would.
type script struct {
	b   *replaytest.Builder
	src *Events
}

func args(td *datadriven.TestData) map[string]string {
	a := map[string]string{}
	for _, arg := range td.CmdArgs {
		a[arg.Key] = strings.Join(arg.Vals, ",")
	}
	return a
}

func rcpts(t testing.TB, s string) []int32 {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("recipient %q: %v", f, err)
		}
		out = append(out, int32(n))
	}
	return out
}

func rcpt(t testing.TB, a map[string]string) int32 {
	v, ok := a["rcpt"]
	if !ok {
		return log.NoRcpt
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("rcpt=%q: %v", v, err)
	}
	return int32(n)
}

func point(t testing.TB, s string) Point {
	if s == "" {
		return Point{}
	}
	p, err := ParsePoint(s, replaytest.Epoch, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *script) sync() { s.src.List = s.b.Events() }

func (s *script) run(t *testing.T, td *datadriven.TestData) string {
	a := args(td)
	txn := a["txn"]
	ctx := context.Background()
	op := log.Operator{User: "postmaster", Reason: a["reason"]}
	defer s.sync()
	switch td.Cmd {
	case "receive":
		size, _ := strconv.Atoi(a["size"])
		s.b.Receive(txn, a["from"], int64(size), strings.Split(a["to"], ",")...)
	case "resolve":
		s.b.Resolve(txn, rcpt(t, a), a["host"], a["ip"])
	case "attempt":
		code, _ := strconv.Atoi(a["code"])
		s.b.Attempt(txn, a["host"], a["ip"], code, rcpts(t, a["rcpts"])...)
	case "start":
		s.b.Start(txn, a["host"], a["ip"], rcpts(t, a["rcpts"])...)
	case "deliver":
		s.b.Deliver(txn, rcpt(t, a), a["host"], a["ip"])
	case "defer":
		d, err := time.ParseDuration(a["next"])
		if err != nil {
			t.Fatal(err)
		}
		s.b.Defer(txn, rcpt(t, a), a["ip"], d, a["reply"])
	case "fail":
		s.b.Fail(txn, rcpt(t, a), a["ip"], a["reply"])
	case "bounce":
		s.b.Bounce(txn, a["dsn"], a["to"], rcpts(t, a["rcpts"])...)
	case "release":
		s.b.Release(txn)
	case "hold":
		s.b.Add(txn, rcpt(t, a), &log.Hold{Operator: op})
	case "expire":
		s.b.Add(txn, rcpt(t, a), &log.RcptExpired{Enhanced: "4.4.7", LastReason: a["reason"]})
	case "event":
		// A raw event for the stories that break the rules.
		switch a["type"] {
		case "delivered":
			s.b.Add(txn, rcpt(t, a), &log.RcptDelivered{Code: 250})
		case "failed":
			s.b.Add(txn, rcpt(t, a), &log.RcptFailed{Code: 550})
		case "deferred":
			s.b.Add(txn, rcpt(t, a), &log.RcptDeferred{NextTry: s.b.Now.Add(time.Hour)})
		default:
			t.Fatalf("event type %q", a["type"])
		}
	case "advance":
		d, err := time.ParseDuration(td.CmdArgs[0].Key)
		if err != nil {
			t.Fatal(err)
		}
		s.b.Advance(d)
		return ""
	case "snapshot":
		s.sync()
		r, err := Rebuild(ctx, s.src, point(t, a["at"]))
		if err != nil {
			t.Fatal(err)
		}
		if a["corrupt"] == "state" {
			// A snapshot at the last seq whose state comes from another
			// last event than the log's.
			last := s.src.LastSeq()
			r, err := Rebuild(ctx, s.src, Point{Seq: last - 1})
			if err != nil {
				t.Fatal(err)
			}
			_ = r.Queue().Apply(log.Event{Seq: last, Time: s.b.Now, Txn: "bogus", Rcpt: log.NoRcpt,
				Payload: &log.TxnReceived{Rcpts: []log.Recipient{{Addr: "ghost@example"}}, Content: "bogus"}})
			if err := SaveSnapshot(s.src, r.Queue()); err != nil {
				t.Fatal(err)
			}
			return "snapshot with the wrong state saved"
		}
		if err := SaveSnapshot(s.src, r.Queue()); err != nil {
			t.Fatal(err)
		}
		return "snapshot at " + strconv.FormatUint(r.Queue().Seq(), 10)
	case "mailq":
		r, err := Rebuild(ctx, s.src, point(t, a["at"]))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := WriteMailq(&b, r.Queue(), s.src.Get, MailqOptions{Directory: "/var/smx"}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	case "queue":
		r, err := Rebuild(ctx, s.src, point(t, a["at"]))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := r.Queue().Dump(&b, projections.DumpOptions{}); err != nil {
			t.Fatal(err)
		}
		if r.FromSnapshot != 0 {
			b.WriteString("(from the snapshot at " + strconv.FormatUint(r.FromSnapshot, 10) + ")\n")
		}
		return b.String()
	case "audit":
		stories, err := Audit(ctx, s.src, a["id"])
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, st := range stories {
			if err := WriteStory(&b, st, time.UTC); err != nil {
				t.Fatal(err)
			}
		}
		if len(stories) == 0 {
			return "no message " + a["id"]
		}
		return b.String()
	case "replay":
		return s.replay(t, a)
	case "stats":
		tr, err := MeasureTraffic(ctx, s.src, point(t, a["from"]), point(t, a["to"]))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := WriteStats(&b, tr, time.UTC); err != nil {
			t.Fatal(err)
		}
		return b.String()
	case "verify":
		missing := a["missing"]
		rep, err := Verify(ctx, s.src, func(ref string) bool { return ref != missing })
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := WriteReport(&b, rep); err != nil {
			t.Fatal(err)
		}
		return b.String()
	default:
		t.Fatalf("unknown command %q", td.Cmd)
	}
	return "ok"
}

func (s *script) replay(t *testing.T, a map[string]string) string {
	f := Filter{Txn: a["msg"], Rcpt: a["rcpt"], Sender: a["sender"]}
	if ty := a["type"]; ty != "" {
		for _, name := range strings.Split(ty, ",") {
			et, err := log.ParseEventType(name)
			if err != nil {
				t.Fatal(err)
			}
			f.Types = append(f.Types, et)
		}
	}
	from := point(t, a["from"])
	if from.IsEnd() {
		from = Point{Seq: 1}
	}
	r, err := RebuildBefore(context.Background(), s.src, from)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	err = r.Run(context.Background(), point(t, a["to"]), func(e log.Event, q *projections.Queue) error {
		if !f.Match(e, q) {
			return nil
		}
		if a["format"] == "json" {
			return WriteJSON(&b, e, q)
		}
		b.WriteString(Line(e, q) + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		s := &script{b: replaytest.New(), src: &Events{}}
		datadriven.RunTest(t, path, s.run)
	})
}
