package content

import (
	"context"
	"fmt"
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
