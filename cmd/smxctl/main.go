// Command smxctl is the operator's tool for smx: it replays and audits
// mail history, shows and steers the queue, and rebuilds state after a
// disk is lost. Every command reads the same smx.conf as smxd (-f), or
// the embedded default without it, to find the queue directory.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "smxctl:", err)
		os.Exit(1)
	}
}
