// Command relaybench measures smxd as a relay on loopback, the way the
// design's relay target is stated: the load generator (tools/loadgen)
// sends through smxd to the sink (tools/smtpsink), and relaybench checks
// that every message smxd acknowledged arrived, once. It measures Postfix
// the same way, in the same run, for the comparison the target asks for.
//
//	relaybench [-bin bin] [-messages 10000] [-sessions 50] [-size 5KB]
//	           [-rcpts 1] [-per-conn 1] [-dir DIR] [-timeout 10m] [-drain 2m]
//	           [-mta smxd[,postfix][,direct]] [-rounds 1] [-postfix PATH]
//	           [-cpuprofile FILE]
//
// -bin is the directory with smxd, loadgen and smtpsink (`make build`
// puts them in bin/). For each run relaybench starts the sink on a free
// loopback port, starts the relay with its configuration and queue in a
// temporary directory (-dir keeps them there) sending everything to the
// sink, runs loadgen against it, waits (up to -drain after the load) until
// the sink has every recipient of every acknowledged message, stops the
// relay and prints the reports of loadgen and the sink and a summary:
//
//	relaybench: messages=10000 acknowledged=10000 delivered=10000 duplicates=0 lost=0 elapsed=4.120s relay_rate=2427.2/s dot_p50=3.2ms dot_p99=14.8ms
//
// The relays (-mta) are smxd (smxd run with the configuration of smxConf),
// postfix (an instance of Postfix of its own, configured by
// postfixMainCF and postfixMasterCF and started with postfix -c; needs
// root and the Debian package postfix) and direct (no relay: loadgen
// straight into the sink, the ceiling of any relay on the machine). With
// several relays or -rounds, each round runs each relay once, the order
// reversed every other round; each run prints a line with its round, relay,
// the load average before and after it and the share of the CPU time
// others used in the second before its load (busy_before), and at the end a line per
// relay with the median and range of its rates and latencies, the ratio of
// smxd's median rate to Postfix's, and the load average's range:
//
//	relaybench: mta=smxd rounds=3 relay_rate=1500.0/s (1400.0-1600.0) dot_p50=9.0ms (8.0-10.0) dot_p99=19.0ms (15.0-25.0) lost=0 duplicates=0
//	relaybench: ratio smxd/postfix=3.41 (median rates; per round 3.30 3.41 3.52)
//	relaybench: load average 1.20-3.40, CPU busy before the runs 12%-30%
//
// delivered, duplicates and lost count recipients (one per message unless
// -rcpts says otherwise), whichever transactions the relay grouped them
// into; a recipient still queued at the end counts as lost. elapsed runs
// from the start of loadgen to the sink's last expected recipient;
// relay_rate is acknowledged messages over it; the dot latencies are
// loadgen's (final dot to 250 at the relay). The exit status is 1 when a
// recipient was lost or something failed.
//
// The program owns the temporary directories and the processes it
// starts; every address it uses is a loopback one.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "relaybench:", err)
		return 2
	}
	results, err := runAll(ctx, cfg, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "relaybench:", err)
		return 1
	}
	for _, r := range results {
		if r.lost() > 0 {
			return 1
		}
	}
	return 0
}
