package projections

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/smx-mta/smx/log"
)

// benchTxn makes an ss_ta as log/ids does: "S", 16 hex digits of counter,
// 2 of process id.
func benchTxn(i int) string { return fmt.Sprintf("S%016x%02x", i, 1) }

// lifecycle returns the events of one message with n recipients that is
// received, resolved, attempted and then deferred (defer true) or
// delivered, with seq numbers from seq+1.
func lifecycle(seq uint64, i, n int, at time.Time, deferIt bool) []log.Event {
	txn := benchTxn(i)
	dest := fmt.Sprintf("esmtp:[192.0.%d.%d]:25", i%7, i%250)
	p := &log.TxnReceived{
		Session:     fmt.Sprintf("S%016x%02x", i/3, 1),
		Sender:      fmt.Sprintf("user%d@example.org", i%5000),
		Content:     txn,
		ContentSize: 5000 + int64(i%3000),
		ReceivedAt:  at,
		ClientIP:    "127.0.0.1",
		Protocol:    "ESMTP",
	}
	for r := range n {
		p.Rcpts = append(p.Rcpts, log.Recipient{Addr: fmt.Sprintf("rcpt%d.%d@dest%d.example", i, r, i%10000)})
	}
	events := []log.Event{{Txn: txn, Rcpt: log.NoRcpt, Payload: p}}
	all := make([]int32, n)
	for r := range n {
		all[r] = int32(r)
		events = append(events, log.Event{Txn: txn, Rcpt: int32(r), Payload: &log.RcptResolved{
			Mailer: log.MailerESMTP, Destination: dest,
			Hops: []log.NextHop{{Host: "mx.example", Addrs: []string{"192.0.2.1"}}},
		}})
	}
	events = append(events, log.Event{Txn: txn, Rcpt: log.NoRcpt, Payload: &log.AttemptStarted{Rcpts: all, Host: "mx.example", IP: "192.0.2.1"}})
	events = append(events, log.Event{Txn: txn, Rcpt: log.NoRcpt, Payload: &log.AttemptFinished{Host: "mx.example", Code: 250}})
	for r := range n {
		if deferIt {
			events = append(events, log.Event{Txn: txn, Rcpt: int32(r), Payload: &log.RcptDeferred{
				NextTry: at.Add(time.Duration(i%3600) * time.Second), Destination: dest, Code: 421, Reason: "421 4.3.0 try later",
			}})
		} else {
			events = append(events, log.Event{Txn: txn, Rcpt: int32(r), Payload: &log.RcptDelivered{Code: 250, Host: "mx.example"}})
		}
	}
	if !deferIt {
		events = append(events, log.Event{Txn: txn, Rcpt: log.NoRcpt, Payload: &log.ContentReleased{Content: txn}})
	}
	for k := range events {
		events[k].Seq = seq + uint64(k) + 1
		events[k].Time = at
	}
	return events
}

// buildDeferred applies msgs messages of n recipients each, all deferred,
// generating the events on the fly so that they are not counted.
func buildDeferred(tb testing.TB, q *Queue, msgs, n int) {
	at := epoch
	for i := range msgs {
		for _, e := range lifecycle(q.Seq(), i, n, at, true) {
			if err := q.Apply(e); err != nil {
				tb.Fatal(err)
			}
		}
		at = at.Add(time.Millisecond)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkDeferredMemory measures the memory of one million recipients in
// DEFEDB, scheduling index included, for one and for four recipients per
// message. The target is 300 bytes per queued recipient.
func BenchmarkDeferredMemory(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("rcpts-per-msg=%d", n), func(b *testing.B) {
			const total = 1_000_000
			for b.Loop() {
				before := heapInUse()
				q := New()
				buildDeferred(b, q, total/n, n)
				if z := q.Sizes(); z.DEFEDB != total {
					b.Fatalf("DEFEDB holds %d, want %d", z.DEFEDB, total)
				}
				after := heapInUse()
				b.ReportMetric(float64(after-before)/total, "bytes/rcpt")
				runtime.KeepAlive(q)
			}
		})
	}
}

// replayStream is a realistic mix: three messages in four delivered at
// once, one deferred; one, two or three recipients.
func replayStream(events int) []log.Event {
	out := make([]log.Event, 0, events+16)
	at := epoch
	for i := 0; len(out) < events; i++ {
		out = append(out, lifecycle(uint64(len(out)), i, 1+i%3, at, i%4 == 3)...)
		at = at.Add(time.Millisecond)
	}
	return out
}

// BenchmarkApply measures the fold alone: events already decoded, in
// memory. The target for replay is one million events per second per core;
// the log's decoding comes on top (see the replay package's benchmark).
func BenchmarkApply(b *testing.B) {
	events := replayStream(1_000_000)
	b.ResetTimer()
	var applied int
	for b.Loop() {
		q := New()
		for _, e := range events {
			_ = q.Apply(e)
		}
		applied += len(events)
	}
	b.ReportMetric(float64(applied)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRecover measures what a restart costs with one million
// recipients queued: restore the snapshot, apply a tail of 100,000 events,
// build the scheduling index. The target is under three seconds.
func BenchmarkRecover(b *testing.B) {
	q := New()
	buildDeferred(b, q, 1_000_000, 1)
	var snap bytes.Buffer
	start := time.Now()
	if err := q.Snapshot(&snap); err != nil {
		b.Fatal(err)
	}
	b.Logf("snapshot of 1,000,000 recipients: %d bytes written in %v", snap.Len(), time.Since(start))
	var tail []log.Event
	at := epoch.Add(time.Hour)
	for i := 1_000_000; len(tail) < 100_000; i++ {
		tail = append(tail, lifecycle(q.Seq()+uint64(len(tail)), i, 1, at, i%4 == 3)...)
	}
	data := snap.Bytes()
	q = nil
	b.ResetTimer()
	for b.Loop() {
		before := heapInUse()
		start := time.Now()
		r, err := RestoreBytes(data)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range tail {
			if err := r.Apply(e); err != nil {
				b.Fatal(err)
			}
		}
		if _, ok := r.NextDue(); !ok {
			b.Fatal("nothing due after recovery")
		}
		b.ReportMetric(time.Since(start).Seconds(), "recover-s")
		b.ReportMetric(float64(heapInUse()-before)/1e6, "heap-MB")
		runtime.KeepAlive(r)
	}
}
