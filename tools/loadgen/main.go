// Command loadgen is an SMTP load generator for smxd (or any SMTP server on
// a loopback address): it sends -messages messages of -size bytes with
// -rcpts recipients each over -sessions concurrent sessions and reports the
// throughput and the latency from the final dot to the 250.
//
//	loadgen -server 127.0.0.1:2525 -sessions 50 -messages 10000 -size 5KB -rcpts 1
//	        [-per-conn 1] [-from load@loadgen.test] [-to rcpt%d@dest.test]
//	        [-helo loadgen.test] [-timeout 10m] [-json]
//
// Each message carries a distinct X-Loadgen-Seq header field (and
// Message-ID), so that a sink behind a relay (tools/smtpsink) can count
// that each arrived once. -per-conn is the number of messages sent over one
// connection before the session QUITs and a new one opens (0: one
// connection per session for all its messages); the default, 1, opens a
// connection per message, as Postfix's smtp-source does without -d.
//
// It prints one report line of name=value fields (or a JSON object with
// -json):
//
//	loadgen: messages=10000 accepted=10000 failed=0 recipients=10000 bytes=52480000 sessions=50 elapsed=3.402s rate=2939.5/s dot_p50=4.1ms dot_p99=15.3ms dot_max=40.2ms
//
// rate counts accepted messages per second of the whole run; dot_p50,
// dot_p99 and dot_max are the time from writing the end of the message
// (the last buffered part of the body and the final dot, one write) to
// reading the server's reply, over the accepted messages. A message the
// server refuses counts as failed with its reply; the first few distinct
// failures are printed to stderr. The exit status is 0 when every message
// was accepted, 1 otherwise.
//
// The program owns nothing but its connections and counters.
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

// run runs the load with the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}
	rep := generate(ctx, cfg, stderr)
	if err := rep.print(stdout, cfg.json); err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 1
	}
	if rep.Accepted != rep.Messages {
		return 1
	}
	return 0
}
