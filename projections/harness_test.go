package projections

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/smx-mta/smx/log"
)

// epoch is the time the stories start at; dumps print times relative to it.
var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func relTime(t time.Time) string {
	if t.IsZero() || t.Equal(time.Unix(0, 0)) {
		return "0"
	}
	return "+" + t.Sub(epoch).String()
}

var relDump = DumpOptions{Time: relTime}

// story drives a Queue the way smxd would: every command appends an event
// at the story's clock and applies it.
type story struct {
	t      testing.TB
	q      *Queue
	now    time.Time
	events []log.Event
}

func newStory(t testing.TB) *story {
	return &story{t: t, q: New(), now: epoch}
}

// apply appends an event and folds it; it returns the anomalies or "ok".
func (s *story) apply(txn string, rcpt int32, p log.Payload) string {
	e := log.Event{Seq: uint64(len(s.events)) + 1, Time: s.now, Txn: txn, Rcpt: rcpt, Payload: p}
	s.events = append(s.events, e)
	err := s.q.Apply(e)
	if err == nil {
		return "ok"
	}
	var b strings.Builder
	for _, a := range Anomalies(err) {
		fmt.Fprintln(&b, "anomaly:", a.Error())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// restart is what smxd does after a crash: restore the snapshot, apply the
// tail (none here) and forget AQ. It also replays the whole log into a
// fresh queue and insists that the three states agree.
func (s *story) restart() string {
	var snap bytes.Buffer
	if err := s.q.Snapshot(&snap); err != nil {
		s.t.Fatalf("snapshot: %v", err)
	}
	restored, err := RestoreBytes(snap.Bytes())
	if err != nil {
		s.t.Fatalf("restore: %v", err)
	}
	replayed := New()
	for _, e := range s.events {
		_ = replayed.Apply(e)
	}
	live, fromSnap, fromLog := dumpString(s.q), dumpString(restored), dumpString(replayed)
	if live != fromSnap || live != fromLog {
		s.t.Fatalf("states differ after restart\nlive:\n%s\nrestored:\n%s\nreplayed:\n%s", live, fromSnap, fromLog)
	}
	s.q = restored
	return fmt.Sprintf("restarted at seq %d (%d bytes of snapshot)", restored.Seq(), snap.Len())
}

func dumpString(q *Queue) string {
	var b strings.Builder
	if err := q.Dump(&b, relDump); err != nil {
		panic(err)
	}
	return b.String()
}

func parseRcpts(t testing.TB, s string) []int32 {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("recipient index %q: %v", f, err)
		}
		out = append(out, int32(n))
	}
	return out
}

func parseNotify(t testing.TB, s string) log.Notify {
	var n log.Notify
	for _, f := range strings.Split(strings.ToUpper(s), ",") {
		switch f {
		case "NEVER":
			n |= log.NotifyNever
		case "SUCCESS":
			n |= log.NotifySuccess
		case "FAILURE":
			n |= log.NotifyFailure
		case "DELAY":
			n |= log.NotifyDelay
		case "":
		default:
			t.Fatalf("NOTIFY %q", f)
		}
	}
	return n
}

// args gives a command's key=value arguments as strings; lists are
// rejoined with commas.
type args map[string]string

func argsOf(td *datadriven.TestData) args {
	a := args{}
	for _, arg := range td.CmdArgs {
		a[arg.Key] = strings.Join(arg.Vals, ",")
	}
	return a
}

func (a args) rcpt(t testing.TB) int32 {
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

func (a args) duration(t testing.TB, key string) time.Duration {
	d, err := time.ParseDuration(a[key])
	if err != nil {
		t.Fatalf("%s=%q: %v", key, a[key], err)
	}
	return d
}

func (a args) int(t testing.TB, key string, def int) int {
	v, ok := a[key]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, v, err)
	}
	return n
}

func (s *story) run(t *testing.T, td *datadriven.TestData) string {
	a := argsOf(td)
	txn := a["txn"]
	op := log.Operator{User: "postmaster", Reason: "test"}
	switch td.Cmd {
	case "receive":
		p := &log.TxnReceived{
			Sender:      a["from"],
			Content:     txn,
			ContentSize: int64(a.int(t, "size", 1000)),
			ReceivedAt:  s.now,
			DSNOf:       a["dsnof"],
			Listener:    a["listener"],
		}
		if c, ok := a["content"]; ok {
			p.Content = c
		}
		notify := parseNotify(t, a["notify"])
		for _, addr := range strings.Split(a["to"], ",") {
			p.Rcpts = append(p.Rcpts, log.Recipient{Addr: addr, Notify: notify})
		}
		if td.HasArg("from") && a["from"] == "<>" {
			p.Sender = ""
		}
		return s.apply(txn, log.NoRcpt, p)
	case "resolve":
		return s.apply(txn, a.rcpt(t), &log.RcptResolved{Mailer: log.MailerESMTP, Destination: a["dest"]})
	case "expand":
		p := &log.RcptResolved{Owner: a["owner"]}
		next := int32(a.int(t, "first", 0))
		for _, addr := range strings.Split(a["to"], ",") {
			if addr == "" {
				continue
			}
			p.Expansion = append(p.Expansion, log.ExpandedRcpt{Rcpt: next, Addr: addr, ORCPT: a["orcpt"], Notify: parseNotify(t, a["notify"])})
			next++
		}
		return s.apply(txn, a.rcpt(t), p)
	case "attempt":
		return s.apply(txn, log.NoRcpt, &log.AttemptStarted{Rcpts: parseRcpts(t, a["rcpts"]), Host: a["host"]})
	case "finish":
		return s.apply(txn, log.NoRcpt, &log.AttemptFinished{Host: a["host"], Code: a.int(t, "code", 250)})
	case "defer":
		p := &log.RcptDeferred{NextTry: s.now.Add(a.duration(t, "next")), Destination: a["dest"], Reason: a["reason"], Code: 421}
		if _, ok := a["down"]; ok {
			p.HostDownUntil = s.now.Add(a.duration(t, "down"))
		}
		return s.apply(txn, a.rcpt(t), p)
	case "deliver":
		return s.apply(txn, a.rcpt(t), &log.RcptDelivered{Code: 250, Relayed: td.HasArg("relayed")})
	case "fail":
		return s.apply(txn, a.rcpt(t), &log.RcptFailed{Code: 550, Reason: a["reason"]})
	case "expire":
		return s.apply(txn, a.rcpt(t), &log.RcptExpired{Enhanced: "4.4.7"})
	case "warn":
		return s.apply(txn, log.NoRcpt, &log.DelayNotified{Rcpts: parseRcpts(t, a["rcpts"]), DSN: a["dsn"]})
	case "dsn":
		return s.apply(txn, log.NoRcpt, &log.DSNQueued{DSN: a["dsn"], Kind: a["kind"], Rcpts: parseRcpts(t, a["rcpts"])})
	case "content-released":
		return s.apply(txn, log.NoRcpt, &log.ContentReleased{Content: txn})
	case "hold":
		return s.apply(txn, a.rcpt(t), &log.Hold{Operator: op})
	case "release":
		return s.apply(txn, a.rcpt(t), &log.Release{Operator: op})
	case "delete":
		return s.apply(txn, a.rcpt(t), &log.Delete{Operator: op})
	case "requeue":
		return s.apply(txn, a.rcpt(t), &log.Requeue{Operator: op})
	case "redirect":
		return s.apply(txn, a.rcpt(t), &log.Redirect{Operator: op, NewAddr: a["to"], NewRcpt: int32(a.int(t, "new", 0))})
	case "advance":
		d, err := time.ParseDuration(td.CmdArgs[0].Key)
		if err != nil {
			t.Fatalf("advance: %v", err)
		}
		s.now = s.now.Add(d)
		return "now " + relTime(s.now)
	case "take":
		from := QueueName(td.CmdArgs[0].Key)
		var b strings.Builder
		for _, r := range s.q.Take(from, s.now, a.int(t, "n", 1000)) {
			fmt.Fprintf(&b, "%s:%d <%s> %s due %s\n", r.Txn, r.Rcpt, r.Addr, r.State, relTime(r.Due))
		}
		if b.Len() == 0 {
			return "nothing due"
		}
		return b.String()
	case "untake":
		return strconv.FormatBool(s.q.Untake(txn, a.rcpt(t)))
	case "claim":
		return strconv.FormatBool(s.q.Claim(txn, a.rcpt(t)))
	case "restart":
		return s.restart()
	case "check":
		problems := s.q.Check(func(string) bool { return true })
		if len(problems) == 0 {
			return "ok"
		}
		var b strings.Builder
		for _, p := range problems {
			fmt.Fprintln(&b, p)
		}
		return b.String()
	case "show":
		return s.show(t, td)
	}
	t.Fatalf("unknown command %q", td.Cmd)
	return ""
}

func (s *story) show(t *testing.T, td *datadriven.TestData) string {
	what := "all"
	if len(td.CmdArgs) > 0 {
		what = td.CmdArgs[0].Key
	}
	var b strings.Builder
	opt := DumpOptions{Time: relTime, Active: true}
	switch what {
	case "all":
		if err := s.q.Dump(&b, opt); err != nil {
			t.Fatal(err)
		}
	case "IQDB", "AQ", "DEFEDB":
		if err := s.q.DumpQueue(&b, QueueName(what), opt); err != nil {
			t.Fatal(err)
		}
	case "sizes":
		z := s.q.Sizes()
		fmt.Fprintf(&b, "IQDB %d AQ %d DEFEDB %d\n", z.IQDB, z.AQ, z.DEFEDB)
	case "next":
		if due, ok := s.q.NextDue(); ok {
			fmt.Fprintf(&b, "next due %s\n", relTime(due))
		} else {
			b.WriteString("nothing queued\n")
		}
	case "releasable":
		for _, m := range s.q.Releasable() {
			fmt.Fprintf(&b, "%s content %s\n", m.Txn, m.Content)
		}
		if b.Len() == 0 {
			b.WriteString("none\n")
		}
	case "active":
		dest := argsOf(td)["dest"]
		for _, r := range s.q.Active(dest) {
			fmt.Fprintf(&b, "%s:%d <%s> %s\n", r.Txn, r.Rcpt, r.Addr, r.State)
		}
		if b.Len() == 0 {
			b.WriteString("none\n")
		}
	case "hosts":
		for _, d := range s.q.Destinations() {
			if until, down := s.q.HostDown(d.Destination, s.now); down {
				fmt.Fprintf(&b, "%s down until %s\n", d.Destination, relTime(until))
			} else {
				fmt.Fprintf(&b, "%s up\n", d.Destination)
			}
		}
	case "message":
		txn := argsOf(td)["txn"]
		m, ok := s.q.Message(txn)
		if !ok {
			return "no message " + txn
		}
		fmt.Fprintf(&b, "%s from <%s> recipients %d live %d dsn-owed %d refs %d",
			m.Txn, m.Sender, m.Recipients, m.Live, m.DSNOwed, m.RefCount())
		if m.DoubleBounce {
			b.WriteString(" double-bounce")
		}
		b.WriteByte('\n')
		for _, r := range s.q.Recipients(txn) {
			fmt.Fprintf(&b, "  %d <%s> %s queue %q sender <%s>", r.Rcpt, r.Addr, r.State, r.Queue, r.Sender)
			if r.ORCPT != "" {
				fmt.Fprintf(&b, " orcpt %s", r.ORCPT)
			}
			if r.DSNOwed {
				b.WriteString(" dsn-owed")
			}
			if r.DelayWarned {
				b.WriteString(" warned")
			}
			b.WriteByte('\n')
		}
	default:
		t.Fatalf("show %q", what)
	}
	return b.String()
}

func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata/stories", func(t *testing.T, path string) {
		s := newStory(t)
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			return s.run(t, td)
		})
		// Whatever a story did, a restart reproduces its state.
		s.restart()
	})
}
