package content

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDurableWrite commits 5 KB bodies, each acknowledged only once
// durable, from 1, 16 and 64 concurrent writers, and reports messages per
// second and syncs per message.
func BenchmarkDurableWrite(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{CompactInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			msg := body(1, 5<<10)
			env := testEnvelope("S0000000000000ABCD00", 1)
			var next atomic.Int64
			var wg sync.WaitGroup
			var failed atomic.Value
			syncs0 := s.Stats().Syncs
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			start := time.Now()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						w, err := s.Create(context.Background(), env)
						if err == nil {
							_, err = w.Write(msg)
						}
						if err == nil {
							_, err = w.Commit(context.Background())
						}
						if err != nil {
							failed.Store(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if err, ok := failed.Load().(error); ok {
				b.Fatal(err)
			}
			syncs := s.Stats().Syncs - syncs0
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(syncs)/float64(b.N), "syncs/msg")
		})
	}
}

// BenchmarkWriteLines writes bodies one line at a time, as the SMTP server
// does (78-byte lines), and commits them: a 5 KB body, buffered in memory
// and committed into the shared segment, and a 1 MB one, streamed into a
// segment of its own. It reports the allocations per line written, which
// must stay near zero: the writer appends each line to its buffer. What a
// message costs whatever its length (the envelope's encoding, the
// reference, the benchmark's own line reader: about 40 allocations) is
// spread over its lines, so the 1 MB figure is the one that tells.
func BenchmarkWriteLines(b *testing.B) {
	for _, size := range []int64{5 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{CompactInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			env := testEnvelope("S0000000000000ABCD00", 1)
			ctx := context.Background()
			var lines int
			var ms runtime.MemStats
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			runtime.ReadMemStats(&ms)
			mallocs := ms.Mallocs
			for b.Loop() {
				w, err := s.Create(ctx, env)
				if err != nil {
					b.Fatal(err)
				}
				n, err := writeLines(w, newGenerator(1, size))
				if err != nil {
					b.Fatal(err)
				}
				lines += n
				ref, err := w.Commit(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Release(ref); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.Mallocs-mallocs)/float64(lines), "allocs/line")
		})
	}
}
