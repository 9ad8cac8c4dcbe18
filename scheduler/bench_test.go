package scheduler

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/smx-mta/smx/log"
)

// BenchmarkDispatch measures scheduling decisions with 100,000 recipients
// in AQ: 1,000 destination IPs, 10 transactions in flight each and 90,000
// resolved recipients waiting. Each operation is one delivery finishing
// and the scheduler's step that decides what goes next (slow start, the
// group heap, connection accounting, the first-level checks). Run with
// -benchtime 50000x to measure while groups are still waiting.
func BenchmarkDispatch(b *testing.B) {
	const rcpts, dests = 100_000, 1_000
	h := newHarness(&testing.T{}, []datadriven.CmdArg{
		{Key: "aq-max", Vals: []string{"200000"}}, {Key: "initial", Vals: []string{"10"}},
		{Key: "max", Vals: []string{"10"}}, {Key: "hold-deliveries"},
	})
	for d := 0; d < dests; d++ {
		h.routes[fmt.Sprintf("d%d.example", d)] = fmt.Sprintf("10.%d.%d.1", d/256, d%256)
	}
	for i := 0; i < rcpts; i++ {
		h.receive(fmt.Sprintf("T%06d", i), "s@client.test", []log.Recipient{{Addr: fmt.Sprintf("u%d@d%d.example", i, i%dests)}})
	}
	h.pump()
	if got := h.core.q.Sizes().AQ; got != rcpts {
		b.Fatalf("AQ holds %d, want %d", got, rcpts)
	}
	if len(h.held) != dests*10 {
		b.Fatalf("%d transactions in flight, want %d", len(h.held), dests*10)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		job := h.held[0]
		h.held = h.held[1:]
		h.core.delivered(deliveryDone{job: job, connected: true})
		h.core.step(h.clk.Now())
		if len(h.held) == 0 {
			// Every group is out: go on finishing the same transactions
			// (the step then only checks that nothing waits).
			b.StopTimer()
			h.held = append(h.held, job)
			h.core.delivering++
			h.core.conn(job.connKey).busy++
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
