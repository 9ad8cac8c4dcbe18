// Command relaybench measures smxd as a relay on loopback, the way the
// design's relay target is stated: the load generator (tools/loadgen)
// sends through smxd to the sink (tools/smtpsink), and relaybench checks
// that every message smxd acknowledged arrived, once.
//
//	relaybench [-bin bin] [-messages 10000] [-sessions 50] [-size 5KB]
//	           [-rcpts 1] [-per-conn 1] [-dir DIR] [-timeout 10m]
//
// -bin is the directory with smxd, loadgen and smtpsink (`make build`
// puts them in bin/). relaybench starts the sink on a free loopback port,
// writes an smx.conf in a temporary directory (-dir keeps it there) whose
// mailertable sends everything to the sink, starts smxd on another free
// port, runs loadgen against it, waits until the sink has every recipient
// of every acknowledged message, stops smxd with SIGTERM, and prints the
// reports of loadgen and the sink and a summary:
//
//	relaybench: messages=10000 acknowledged=10000 delivered=10000 duplicates=0 lost=0 elapsed=4.120s relay_rate=2427.2/s dot_p50=3.2ms dot_p99=14.8ms
//
// delivered, duplicates and lost count recipients (one per message unless
// -rcpts says otherwise), whichever transactions smxd grouped them into.
// elapsed runs from the start of loadgen to the sink's last expected
// recipient; relay_rate is acknowledged messages over it; the dot
// latencies are loadgen's (final dot to 250 at smxd). The exit status is 1
// when a recipient was lost or something failed.
//
// The program owns the temporary directory and the three processes it
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
	res, err := bench(ctx, cfg, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "relaybench:", err)
		return 1
	}
	fmt.Fprintln(stdout, res.summary())
	if res.lost() > 0 {
		return 1
	}
	return 0
}
