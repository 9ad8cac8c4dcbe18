package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
)

// TestKillWithMailInQueue: SIGKILL with deferred mail in the queue, then
// a restart: recovery finds every message, and once the next hop takes
// mail again every one is delivered.
func TestKillWithMailInQueue(t *testing.T) {
	t.Parallel()
	snk, slow := slowSink(t)
	e := newEnv(t, envOptions{sinkPort: snk.port, qmgr: "retry_min_delay = 1h; retry_max_delay = 1h;"})
	p := e.start(t)
	const n = 20
	for i := range n {
		mustSend(t, e.addr(), "alice@client.test", []string{fmt.Sprintf("u%d@slow.test", i)}, strconv.Itoa(i))
	}
	for i := range n {
		p.waitLine(t, fmt.Sprintf(`rcpt=<u%d@slow.test>, idx=0, stat=451`, i))
	}
	p.kill(t)

	slow(false)
	p = e.start(t)
	line := p.waitLine(t, `func=qmgr_recovery`)
	require.Contains(t, line, fmt.Sprintf("queued=%d,", n), "every acknowledged message is back in the queue")
	out := e.mustCtl(t, "mailq")
	require.Contains(t, out, fmt.Sprintf("Total requests: %d", n))
	e.mustCtl(t, "flush")
	msgs := snk.waitCount(t, n)
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.header("X-Seq")]++
	}
	for i := range n {
		require.Equal(t, 1, seen[strconv.Itoa(i)], "message %d", i)
	}
	p.stop(t)
}

// TestKill9MidRelay relays with many concurrent clients, kills smxd with
// SIGKILL in the middle, restarts it, and checks that every message that
// got its 250 reaches the sink, counting the duplicates (delivery is at
// least once: an attempt in flight at the kill is made again).
func TestKill9MidRelay(t *testing.T) {
	t.Parallel()
	snk := newSink(t)
	// A next hop slower than the clients, so that mail piles up in the
	// queue and the kill finds recipients queued and attempts in flight.
	snk.setDelay(20 * time.Millisecond)
	e := newEnv(t, envOptions{sinkPort: snk.port})
	p := e.start(t)

	const clients = 8
	var acked sync.Map // X-Seq -> ss_ta
	var nAcked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				seq := fmt.Sprintf("c%d-%d", c, i)
				id, err := send(t, e.addr(), "load@client.test", []string{"r" + seq + "@dest.test"}, seq)
				if err != nil {
					return // smxd is gone: this message was never acknowledged
				}
				acked.Store(seq, id)
				nAcked.Add(1)
			}
		})
	}
	// Kill once enough mail went through and more is on its way.
	snk.waitCount(t, 50)
	p.kill(t)
	close(stop)
	wg.Wait()
	total := int(nAcked.Load())
	delivered := map[string]bool{}
	for _, m := range snk.messages() {
		delivered[m.header("X-Seq")] = true
	}
	atKill := 0
	acked.Range(func(k, _ any) bool {
		if delivered[k.(string)] {
			atKill++
		}
		return true
	})

	p = e.start(t)
	recovery := p.waitLine(t, `func=qmgr_recovery`)
	snk.waitFor(t, "every acknowledged message", func(ms []sinkMsg) bool {
		got := map[string]bool{}
		for _, m := range ms {
			got[m.header("X-Seq")] = true
		}
		missing := 0
		acked.Range(func(k, _ any) bool {
			if !got[k.(string)] {
				missing++
			}
			return true
		})
		return missing == 0
	})
	msgs := snk.messages()
	counts := map[string]int{}
	for _, m := range msgs {
		counts[m.header("X-Seq")]++
	}
	dups := 0
	for _, c := range counts {
		dups += c - 1
	}
	// A duplicate is a recipient the sink took whose outcome the kill kept
	// out of the log: its attempt was in flight. The queue as recovery
	// found it (mailq at recovery's last_seq) lists those.
	m := regexp.MustCompile(`last_seq=(\d+)`).FindStringSubmatch(recovery)
	require.NotNil(t, m, recovery)
	inFlight := strings.Count(e.mustCtl(t, "mailq", "--at", m[1]), "(Delivery in progress")
	t.Logf("kill -9 mid-relay: %d acknowledged (%d not yet delivered at the kill), %d delivered (%d distinct), %d duplicates, %d recipients in flight at the kill; %s",
		total, total-atKill, len(msgs), len(counts), dups, inFlight, recovery)
	require.GreaterOrEqual(t, len(counts), total)
	require.LessOrEqual(t, dups, inFlight, "duplicates stay within the attempts in flight at the kill")
	p.stop(t)
}

// TestReloadAccessMap: SIGHUP reloads a changed access map. New sessions
// get the new rules; a session open across the reload is not dropped and
// finishes its transaction.
func TestReloadAccessMap(t *testing.T) {
	t.Parallel()
	snk := newSink(t)
	e := newEnv(t, envOptions{sinkPort: snk.port, smtps: "flags = { access };", smar: "access_map { file = access; }"})
	access := filepath.Join(e.dir, "access")
	require.NoError(t, os.WriteFile(access, []byte("to:@closed.test error:550 5.7.1 closed for good\n"), 0o644))
	p := e.start(t)

	_, err := send(t, e.addr(), "a@client.test", []string{"x@closed.test"}, "closed")
	require.ErrorContains(t, err, "closed for good")
	mustSend(t, e.addr(), "a@client.test", []string{"x@later.test"}, "before")

	// A session that is in a transaction while the map changes.
	open, err := gosmtp.Dial(e.addr())
	require.NoError(t, err)
	defer open.Close()
	require.NoError(t, open.Hello("client.test"))
	require.NoError(t, open.Mail("a@client.test", nil))
	require.NoError(t, open.Rcpt("y@later.test", nil))

	require.NoError(t, os.WriteFile(access, []byte("to:@closed.test error:550 5.7.1 closed for good\nto:@later.test error:550 5.7.1 closed now\n"), 0o644))
	mark := p.mark()
	p.signal(t, syscall.SIGHUP)
	p.waitLineFrom(t, mark, `func=smxd_reload, reloaded=smar;map mailertable;map access_map`)

	_, err = send(t, e.addr(), "a@client.test", []string{"x@later.test"}, "after")
	require.ErrorContains(t, err, "closed now", "a new session sees the new map")

	// The open session was not dropped: its transaction completes.
	w, err := open.Data()
	require.NoError(t, err)
	fmt.Fprintf(w, "Subject: across\r\nX-Seq: across\r\n\r\nsent across a reload\r\n")
	require.NoError(t, w.Close())
	require.NoError(t, open.Quit())
	snk.waitFor(t, "the message sent across the reload", hasSeq("across"))

	// A broken map is refused and the old one stays.
	require.NoError(t, os.WriteFile(access, []byte("to:@later.test frobnicate\n"), 0o644))
	out, err := e.ctl(t, "reload")
	require.Error(t, err, out)
	require.Contains(t, out, "nothing changed")
	_, err = send(t, e.addr(), "a@client.test", []string{"x@later.test"}, "still")
	require.ErrorContains(t, err, "closed now")
	p.stop(t)
}

// TestSignalsAndRotation: SIGUSR2 reopens a log file moved away; SIGINT
// and SIGTERM stop smxd with exit status 0 after a snapshot.
func TestSignalsAndRotation(t *testing.T) {
	t.Parallel()
	snk := newSink(t)
	e := newEnv(t, envOptions{sinkPort: snk.port, global: "log { output = file; file = maillog; }\n"})
	maillog := filepath.Join(e.spool, "maillog")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		p := e.start(t)
		mustSend(t, e.addr(), "a@client.test", []string{"b@dest.test"}, sig.String())
		snk.waitFor(t, sig.String(), hasSeq(sig.String()))
		require.NoError(t, os.Rename(maillog, maillog+".0"))
		p.signal(t, syscall.SIGUSR2)
		p.waitLine(t, `reopening log files`)
		p.signal(t, sig)
		require.NoError(t, p.wait(t), "exit status 0 after %v", sig)
		old, err := os.ReadFile(maillog + ".0")
		require.NoError(t, err)
		require.Contains(t, string(old), "func=smxd_start")
		cur, err := os.ReadFile(maillog)
		require.NoError(t, err)
		require.Contains(t, string(cur), "func=qmgr_snapshot")
		require.Contains(t, string(cur), "func=smxd_stop")
		require.NoError(t, os.Remove(maillog+".0"))
	}
}

// TestGracefulStop: SIGTERM with a session in a transaction and a
// delivery attempt in flight. New connections are refused at once; the
// session finishes its transaction and gets its 250; the attempt finishes
// with its outcome in the log; smxd writes a snapshot and exits 0. The
// message received during the stop is delivered after the restart.
func TestGracefulStop(t *testing.T) {
	t.Parallel()
	snk := newSink(t)
	snk.setDelay(time.Second)
	e := newEnv(t, envOptions{sinkPort: snk.port})
	p := e.start(t)

	inFlight := mustSend(t, e.addr(), "a@client.test", []string{"b@dest.test"}, "in-flight")
	select {
	case seq := <-snk.inData:
		require.Equal(t, "in-flight", seq)
	case <-time.After(wait):
		t.Fatal("the delivery did not reach the sink")
	}
	open, err := gosmtp.Dial(e.addr())
	require.NoError(t, err)
	defer open.Close()
	require.NoError(t, open.Hello("client.test"))
	require.NoError(t, open.Mail("a@client.test", nil))
	require.NoError(t, open.Rcpt("c@dest.test", nil))

	p.signal(t, syscall.SIGTERM)
	p.waitLine(t, `msg=stopping`)
	p.waitLine(t, `msg="stopped accepting" component="smtps MTA"`)
	_, err = gosmtp.Dial(e.addr())
	require.Error(t, err, "a stopping smxd accepts no new connection")

	w, err := open.Data()
	require.NoError(t, err)
	fmt.Fprintf(w, "Subject: during stop\r\nX-Seq: during-stop\r\n\r\nsent while smxd stops\r\n")
	resp, err := w.CloseWithResponse()
	require.NoError(t, err, "the open session finishes its transaction")
	during := queuedAs.FindStringSubmatch(resp.StatusText)[1]
	open.Quit()

	require.NoError(t, p.wait(t), "exit status 0")
	p.waitLine(t, `ss_ta=`+inFlight+`, where=final_dot, .*stat=0`)
	p.waitLine(t, `func=qmgr_snapshot, seq=\d+, when=stop`)
	require.Zero(t, p.count(`func=qmgr_stop`), "nothing was cut off")

	snk.setDelay(0)
	p = e.start(t)
	line := p.waitLine(t, `func=qmgr_recovery`)
	require.Contains(t, line, "events=0,", "the snapshot at stop covers the whole log")
	// The message received during the stop was delivered during the
	// grace period or is delivered now: once either way.
	snk.waitFor(t, "the message received during the stop", hasSeq("during-stop"))
	n := map[string]int{}
	for _, m := range snk.messages() {
		n[m.header("X-Seq")]++
	}
	require.Equal(t, 1, n["in-flight"], "the attempt in flight at the stop was not repeated")
	require.Equal(t, 1, n["during-stop"], during)
	p.stop(t)
}

// TestPrivileges: started as root with a user option, smxd binds its
// port as root and runs as that user; the queue is the user's. Started as
// root without one, it refuses unless told to.
func TestPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	t.Parallel()
	uid, _ := testUser(t)
	snk := newSink(t)
	e := newEnv(t, envOptions{sinkPort: snk.port, global: "user = " + testUserName + ";\n"})
	// The maps are read by smxd's user (they are reloaded after the
	// switch): the directories must let it in.
	require.NoError(t, os.Chmod(e.dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(e.dir), 0o755))

	p := launchCmd(t, exec.Command(bins.smxd, "run", "-f", e.conf))
	p.waitLine(t, `msg="smxd started"`)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$`).FindStringSubmatch(string(status))
	require.NotNil(t, m)
	for _, id := range m[1:] {
		require.Equal(t, strconv.Itoa(uid), id, "real, effective, saved and file system uid")
	}
	p.waitLine(t, `func=smxd_start, .*user=`+testUserName)
	filepath.Walk(e.spool, func(path string, fi os.FileInfo, err error) error {
		require.NoError(t, err)
		require.Equal(t, uint32(uid), fi.Sys().(*syscall.Stat_t).Uid, "%s belongs to smxd's user", path)
		return nil
	})
	mustSend(t, e.addr(), "a@client.test", []string{"b@dest.test"}, "as-user")
	snk.waitFor(t, "as-user", hasSeq("as-user"))
	p.stop(t)

	// Without a user option and without --allow-root: refused.
	e2 := newEnv(t, envOptions{sinkPort: snk.port})
	out, err := exec.Command(bins.smxd, "run", "-f", e2.conf).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "refusing to run as root")
}

// TestUnsafePermissions: a map file or a queue directory others can write
// stops smxd with a message that names it.
func TestUnsafePermissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{sinkPort: 1})
	mt := filepath.Join(e.dir, "mailertable")
	require.NoError(t, os.Chmod(mt, 0o666))
	out, err := exec.Command(bins.smxd, "run", "-f", e.conf, "--allow-root").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "map mailertable "+mt+" is writable by every user (mode 0666): run chmod o-w "+mt)
	require.NoError(t, os.Chmod(mt, 0o644))

	require.NoError(t, os.MkdirAll(e.spool, 0o750))
	require.NoError(t, os.Chmod(e.spool, 0o777))
	out, err = exec.Command(bins.smxd, "run", "-f", e.conf, "--allow-root").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "queue directory "+e.spool+" is writable by every user")
}

// TestMetrics scrapes the metrics listener after some mail and reads it
// with Prometheus's own parser.
func TestMetrics(t *testing.T) {
	t.Parallel()
	snk := newSink(t)
	e := newEnv(t, envOptions{sinkPort: snk.port, metrics: true})
	p := e.start(t)
	p.waitLine(t, fmt.Sprintf(`func=smxd_start, .*metrics=127.0.0.1:%d`, e.metrics))
	var ids []string
	for i := range 3 {
		ids = append(ids, mustSend(t, e.addr(), "a@client.test", []string{"b@dest.test", "c@dest.test"}, strconv.Itoa(i)))
	}
	// smxd counts the events once they are durable, before the
	// scheduler writes the delivery's mail log lines.
	for _, id := range ids {
		p.waitLine(t, `ss_ta=`+id+`, where=final_dot, .*stat=0`)
	}
	fams := scrape(t, e.metrics)
	require.Equal(t, 6.0, fams["smx_recipients_total"].value(`outcome="delivered"`))
	require.Equal(t, 3.0, fams["smx_transactions_received_total"].value(`listener="MTA"`))
	require.Equal(t, 6.0, fams["smx_recipients_received_total"].value(``))
	require.GreaterOrEqual(t, fams["smx_smtp_connections_total"].value(`listener="MTA"`), 3.0)
	require.Equal(t, 0.0, fams["smx_queue_recipients"].value(`queue="DEFEDB"`))
	require.Equal(t, 1.0, fams["smx_up"].value(``))
	for _, name := range []string{"smx_delivery_attempt_seconds", "smx_eventlog_append_seconds", "smx_cdb_commit_seconds",
		"smx_delivery_delay_seconds", "smx_events_appended_total", "smx_destination_connections", "smx_disk_free_bytes",
		"smx_smtp_sessions", "smx_component_up", "smx_cdb_syncs_total"} {
		require.Contains(t, fams, name)
	}
	require.Greater(t, fams["smx_eventlog_append_seconds"].count, 0.0)
	syncs := fams["smx_eventlog_wal_syncs_total"].value(``)
	require.Greater(t, syncs, 0.0, "the event log's fsyncs are counted")
	require.LessOrEqual(t, syncs, fams["smx_events_appended_total"].sum(), "no more syncs than events")
	require.Greater(t, fams["smx_eventlog_wal_sync_seconds_total"].value(``), 0.0)
	require.Greater(t, fams["smx_cdb_commit_seconds"].count, 0.0)
	p.stop(t)
}

type promFamily struct {
	values map[string]float64 // by rendered labels
	count  float64            // of a histogram's first series
}

// sum adds the values of every series.
func (f *promFamily) sum() float64 {
	var s float64
	if f != nil {
		for _, v := range f.values {
			s += v
		}
	}
	return s
}

func (f *promFamily) value(labels string) float64 {
	if f == nil {
		return -1
	}
	v, ok := f.values[labels]
	if !ok {
		return -1
	}
	return v
}

func scrape(t *testing.T, port int) map[string]*promFamily {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var parser expfmt.TextParser
	mfs, err := parser.TextToMetricFamilies(bufio.NewReader(resp.Body))
	require.NoError(t, err)
	out := map[string]*promFamily{}
	for name, mf := range mfs {
		f := &promFamily{values: map[string]float64{}}
		for _, m := range mf.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := strings.Join(ls, ",")
			switch {
			case m.Counter != nil:
				f.values[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				f.values[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				if f.count == 0 {
					f.count = float64(m.Histogram.GetSampleCount())
				}
			}
		}
		out[name] = f
	}
	return out
}
