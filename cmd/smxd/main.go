// Command smxd is the smx mail transfer agent: one daemon that runs the
// seed's modules (SMTPS, QMGR, SMTPC, SMAR) as supervised components of one
// process, with every envelope transition recorded in the event log.
//
//	smxd run [-f smx.conf]         run in the foreground
//	smxd config check FILE         check a configuration file
//	smxd config dump [-f FILE]     print the effective configuration
//	smxd version
//
// Without -f, smxd uses its embedded default configuration (listen on
// 127.0.0.1:2525, queue in ./var/smx, relay for loopback clients).
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "smxd:", err)
		os.Exit(1)
	}
}
