package replay

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/replay/replaytest"
)

// benchMessage appends one message's life: received with one to three
// recipients, resolved, attempted, then three in four delivered and
// released, one in four deferred.
func benchMessage(b *replaytest.Builder, i int) {
	txn := fmt.Sprintf("S%016x01", i+1)
	ip := fmt.Sprintf("192.0.%d.%d", i%7, 1+i%250)
	n := 1 + i%3
	rcpts := make([]string, n)
	idx := make([]int32, n)
	for r := range n {
		rcpts[r] = fmt.Sprintf("rcpt%d.%d@dest%d.example", i, r, i%10000)
		idx[r] = int32(r)
	}
	b.Advance(time.Millisecond)
	b.Receive(txn, fmt.Sprintf("user%d@example.org", i%5000), int64(5000+i%3000), rcpts...)
	for r := range n {
		b.Resolve(txn, int32(r), "mx.example", ip)
	}
	if i%4 == 3 {
		b.Attempt(txn, "mx.example", ip, 421, idx...)
		for r := range n {
			b.Defer(txn, int32(r), ip, time.Hour, "421 4.3.0 try again later")
		}
		return
	}
	b.Attempt(txn, "mx.example", ip, 250, idx...)
	for r := range n {
		b.Deliver(txn, int32(r), "mx.example", ip)
	}
	b.Release(txn)
}

// writeBenchLog writes at least events events into a fresh log in dir.
func writeBenchLog(tb testing.TB, dir string, events int, message func(*replaytest.Builder, int)) *log.Log {
	ctx := context.Background()
	l, err := log.Open(dir, log.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	b := replaytest.New()
	for i := 0; int(l.LastSeq()) < events; i++ {
		message(b, i)
		if len(b.Events()) >= 100_000 {
			flush(tb, ctx, l, b)
		}
	}
	flush(tb, ctx, l, b)
	return l
}

// flush appends what b holds to l and empties b, keeping its clock.
func flush(tb testing.TB, ctx context.Context, l *log.Log, b *replaytest.Builder) {
	events := b.Events()
	for i := 0; i < len(events); i += 1024 {
		batch := make([]log.Event, 0, 1024)
		for _, e := range events[i:min(i+1024, len(events))] {
			e.Seq = 0
			batch = append(batch, e)
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			tb.Fatal(err)
		}
	}
	now := b.Now
	*b = *replaytest.New()
	b.Now = now
}

// replayEvents is the size of the log BenchmarkReplayLog replays. make
// bench replays one million events per iteration, which takes seconds to
// write; the design's figure is ten million:
//
//	go test -run '^$' -bench ReplayLog -benchtime 1x ./replay -replay.events 10000000
var replayEvents = flag.Int("replay.events", 1_000_000, "events in the log BenchmarkReplayLog replays")

// BenchmarkReplayLog measures replay from a real log: read, decode and fold
// every event from the first, as smxd does without a snapshot, and reports
// the rate (events/s). The read-only variant shows how the time divides
// between the log and the fold.
func BenchmarkReplayLog(b *testing.B) {
	events := *replayEvents
	l := writeBenchLog(b, b.TempDir(), events, benchMessage)
	defer l.Close()
	src := FromLog(l)
	n := int(l.LastSeq())
	b.Run("read-only", func(b *testing.B) {
		for b.Loop() {
			it := src.Iter(1)
			count := 0
			for it.Next() {
				count++
			}
			if err := it.Err(); err != nil {
				b.Fatal(err)
			}
			it.Close()
			if count != n {
				b.Fatalf("read %d events, want %d", count, n)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("rebuild", func(b *testing.B) {
		for b.Loop() {
			r, err := Recover(context.Background(), src)
			if err != nil {
				b.Fatal(err)
			}
			if r.Applied != n || r.AnomalyCount != 0 {
				b.Fatalf("applied %d of %d, %d anomalies", r.Applied, n, r.AnomalyCount)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// deferredMessage is a message with one recipient received and deferred:
// two events per queued recipient, so that a log with a million of them
// is quick to write.
func deferredMessage(b *replaytest.Builder, i int) {
	txn := fmt.Sprintf("S%016x01", i+1)
	ip := fmt.Sprintf("192.0.%d.%d", i%7, 1+i%250)
	b.Advance(time.Millisecond)
	b.Receive(txn, fmt.Sprintf("user%d@example.org", i%5000), int64(5000+i%3000), fmt.Sprintf("rcpt%d@dest%d.example", i, i%10000))
	b.Defer(txn, 0, ip, time.Duration(i%3600)*time.Second, "421 4.3.0 try again later")
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkRecoverQueued measures what smxd's start costs with one million
// recipients queued: the newest snapshot read from the log and restored,
// a tail of 100,000 events read and applied, and the scheduling index
// built (NextDue). The target is under three seconds; heap-MB is the
// memory the recovered queue holds.
func BenchmarkRecoverQueued(b *testing.B) {
	const queued = 1_000_000
	ctx := context.Background()
	l := writeBenchLog(b, b.TempDir(), 2*queued, deferredMessage)
	defer l.Close()
	r, err := Recover(ctx, FromLog(l))
	if err != nil {
		b.Fatal(err)
	}
	if got := len(r.Queue().Messages()); got != queued {
		b.Fatalf("%d messages queued, want %d", got, queued)
	}
	start := time.Now()
	if err := SaveSnapshot(l, r.Queue()); err != nil {
		b.Fatal(err)
	}
	b.Logf("snapshot of %d queued recipients encoded and saved in %v", queued, time.Since(start))
	r = nil
	tail := replaytest.New()
	tail.Now = replaytest.Epoch.Add(time.Hour)
	for i := queued; len(tail.Events()) < 100_000; i++ {
		benchMessage(tail, i)
	}
	flush(b, ctx, l, tail)

	for b.Loop() {
		before := heapAlloc()
		start := time.Now()
		r, err := Recover(ctx, FromLog(l))
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := r.Queue().NextDue(); !ok || r.FromSnapshot == 0 {
			b.Fatalf("nothing due, or no snapshot used (%d)", r.FromSnapshot)
		}
		elapsed := time.Since(start)
		b.ReportMetric(elapsed.Seconds(), "recover-s")
		b.ReportMetric(float64(r.Applied), "tail-events")
		b.ReportMetric(float64(heapAlloc()-before)/1e6, "heap-MB")
		z := r.Queue().Sizes()
		b.ReportMetric(float64(z.IQDB+z.DEFEDB), "queued-rcpts")
		runtime.KeepAlive(r)
	}
}

// BenchmarkAudit measures `smxctl audit` of one message in a log of one
// million events: by ss_ta and by Message-ID.
func BenchmarkAudit(b *testing.B) {
	const events = 1_000_000
	l := writeBenchLog(b, b.TempDir(), events, benchMessage)
	defer l.Close()
	src := FromLog(l)
	for _, c := range []struct{ name, id string }{
		{"ss_ta", fmt.Sprintf("S%016x01", 1000)},
		{"message-id", fmt.Sprintf("<S%016x01@client.example>", 1000)},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				stories, err := Audit(context.Background(), src, c.id)
				if err != nil {
					b.Fatal(err)
				}
				if len(stories) != 1 || len(stories[0].Events) < 4 {
					b.Fatalf("audit of %s found %d stories", c.id, len(stories))
				}
			}
		})
	}
}
