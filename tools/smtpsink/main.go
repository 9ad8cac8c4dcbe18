// Command smtpsink is the next hop of tests and benchmarks: an SMTP or LMTP
// server on a loopback address (or a unix socket) that accepts mail as fast
// as it can, counts messages, recipients and bytes, optionally records each
// message to a directory, and answers MAIL, RCPT and DATA with the replies
// it is told to (to keep mail in a queue, or to bounce it).
//
//	smtpsink [-listen 127.0.0.1:2526 | -listen unix:/path] [-lmtp]
//	         [-record DIR] [-count-header X-Loadgen-Seq]
//	         [-mail-reply "451 4.3.0 try later"] [-rcpt-reply ...] [-data-reply ...]
//	         [-expect RCPTS] [-timeout 10m] [-report 10s]
//
// When it listens it prints "smtpsink: listening on ADDR"; when the
// messages it accepted had -expect recipients, "smtpsink: reached N
// recipients"; every -report interval, and when it stops, a report line of
// name=value fields:
//
//	smtpsink: messages=10000 recipients=10000 bytes=52480000 distinct=10000 duplicates=0 elapsed=3.402s rate=2939.5/s
//
// elapsed and rate (messages per second) run from the first message
// accepted to the last. distinct and duplicates count the pairs of a
// -count-header value (loadgen's X-Loadgen-Seq by default) and a
// recipient, so that a relay run can show that every recipient of every
// message arrived once, however the relay grouped them into transactions.
// It stops on SIGINT or SIGTERM (exit 0), once -expect recipients have
// arrived (exit 0), or when -timeout passes first (exit 1).
//
// The program owns nothing but its listener, its counters and the files it
// records; it does not read any configuration.
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

// run runs the sink with the command line args until ctx is done, -expect
// is reached or -timeout passes, and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "smtpsink:", err)
		return 2
	}
	s, err := listen(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "smtpsink:", err)
		return 1
	}
	fmt.Fprintf(stdout, "smtpsink: listening on %s\n", s.Addr())
	if err := s.serve(ctx, stdout); err != nil {
		fmt.Fprintln(stderr, "smtpsink:", err)
		return 1
	}
	return 0
}
