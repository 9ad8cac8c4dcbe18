package scheduler

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/smx-mta/smx/log"
)

// BenchmarkDispatch measures scheduling decisions with 100,000 recipients
// in AQ: 1,000 destination IPs, 10 transactions in flight each and 90,000
// resolved recipients waiting. Each operation is one delivery finishing
// and the scheduler's step that decides what goes next (slow start, the
// group heap, connection accounting, the first-level checks). Every
// 50,000 decisions it starts again from a full AQ.
func BenchmarkDispatch(b *testing.B) {
	const rcpts, dests = 100_000, 1_000
	setup := func() *harness {
		h := newHarness(&testing.T{}, []datadriven.CmdArg{
			{Key: "aq-max", Vals: []string{"200000"}}, {Key: "initial", Vals: []string{"10"}},
			{Key: "max", Vals: []string{"10"}}, {Key: "hold-deliveries"},
		})
		h.core.logger = slog.New(slog.DiscardHandler)
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
		return h
	}
	h := setup()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%50_000 == 0 {
			// The outcomes never come back through the feed here, so
			// the entries of finished transactions stay in AQ: start
			// again with a full AQ while groups still wait, so that
			// every decision measured is one the live scheduler makes.
			b.StopTimer()
			h = setup()
			b.StartTimer()
		}
		job := h.held[0]
		h.held = h.held[1:]
		h.core.delivered(deliveryDone{job: job, connected: true})
		h.core.step(h.clk.Now())
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
