package log

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAppend measures durable appends of realistic events (the mail
// flow of sample_test.go: TxnReceived with one to three recipients,
// RcptResolved, attempts, RcptDelivered, ...), one event per Append, from
// 1 to 256 concurrent writers, reporting events/s, events per WAL sync, CPU
// time per event (the process's, syncs included) and the 99th percentile of
// Append's latency.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchmarkAppend(b, writers)
		})
	}
}

func benchmarkAppend(b *testing.B, writers int) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	events := make([][]Event, writers)
	for w := range events {
		flow := newMailFlow(uint64(w))
		events[w] = make([]Event, 512)
		for i := range events[w] {
			events[w][i] = flow.Event()
		}
	}
	ctx := context.Background()
	var next atomic.Int64
	latencies := make([][]time.Duration, writers)
	var wg sync.WaitGroup
	b.ResetTimer()
	startSyncs := l.Stats().WALSyncs
	start, cpu := time.Now(), cpuTime()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; next.Add(1) <= int64(b.N); i++ {
				e := events[w][i%len(events[w])]
				t := time.Now()
				if _, err := l.Append(ctx, e); err != nil {
					b.Error(err)
					return
				}
				latencies[w] = append(latencies[w], time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	b.StopTimer()
	all := slices.Concat(latencies...)
	slices.Sort(all)
	n := l.Stats().WALSyncs - startSyncs
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/event")
	if n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "events/sync")
	}
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// fillLog appends n events of realistic traffic in calls of 1000 events.
func fillLog(b *testing.B, l *Log, n int) {
	flow := newMailFlow(99)
	batch := make([]Event, 0, 1000)
	for i := 0; i < n; i++ {
		batch = append(batch, flow.Event())
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := l.Append(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// replayEvents is the size of the log the replay benchmarks read.
const replayEvents = 300_000

// BenchmarkReplay measures a full replay: iterating and decoding every
// event of a log of realistic traffic, as recovery does after a restart
// (the log is closed and reopened first, so the events come from
// sstables).
func BenchmarkReplay(b *testing.B) {
	dir := b.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	fillLog(b, l, replayEvents)
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if l, err = Open(dir, Options{}); err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	benchmarkRead(b, l)
}

// cpuTime returns the CPU time the process has used, all threads
// together. On a shared machine wall-clock rates swing with the load of
// others; CPU time per event is the steadier measure of what a core
// achieves.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchmarkRead(b *testing.B, l *Log) {
	b.ReportAllocs()
	events := 0
	var cpu time.Duration
	for b.Loop() {
		if events == 0 {
			cpu = cpuTime()
		}
		it := l.Iter(1)
		n := 0
		for it.Next() {
			n++
		}
		if err := it.Err(); err != nil {
			b.Fatal(err)
		}
		it.Close()
		if n != replayEvents {
			b.Fatalf("read %d events", n)
		}
		events += n
	}
	b.ReportMetric(float64(events)/(cpuTime()-cpu).Seconds(), "events/cpu-s")
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkArchiveRead measures reading a log whose events are all in
// archive segments.
func BenchmarkArchiveRead(b *testing.B) {
	dir := b.TempDir()
	clock := newFakeClock()
	l, err := Open(dir, Options{Clock: clock.Now, ArchiveAfter: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	fillLog(b, l, replayEvents)
	clock.now = clock.now.Add(24 * time.Hour)
	start := time.Now()
	stats, err := l.Archive(context.Background(), func(string) (time.Time, bool) { return t0, true })
	if err != nil {
		b.Fatal(err)
	}
	archiveTime := time.Since(start)
	if stats.Archived != replayEvents {
		b.Fatalf("archived %d events", stats.Archived)
	}
	var size int64
	for _, s := range stats.Segments {
		fi, err := os.Stat(filepath.Join(dir, "archive", s))
		if err != nil {
			b.Fatal(err)
		}
		size += fi.Size()
	}
	benchmarkRead(b, l)
	// After the loop: b.Loop drops metrics reported before it.
	b.ReportMetric(float64(size)/replayEvents, "archive-bytes/event")
	b.ReportMetric(replayEvents/archiveTime.Seconds(), "archived-events/s")
}
