package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/replay"
)

// errVerifyFailed makes smxctl exit non-zero after the report is printed.
var errVerifyFailed = errors.New("verify: the log breaks invariants (see the report)")

func newVerifyCmd(flags *globalFlags) *cobra.Command {
	var checkContent bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the invariants of the event log",
		Long: `Verify reads the whole event log from its first event and checks that the
queue it describes is sound: each recipient has at most one terminal event
and nothing happens to it after that; every event concerns a received
message and an existing recipient, and none comes after the message's
content was released; a body is released only when nothing needs it; the
reference counts match at the end; the newest snapshot holds exactly the
state the log gives at its sequence number; and every record can be read.

It prints a summary, the count of violations per rule, and each violation
with the sequence number, ss_ta and recipient where it happened, and exits
non-zero when there is any. It is safe while smxd runs.

With --content it also checks that the body of every message still queued
is in the content store. That opens the content store as smxd does, which
takes its lock and recovers it after a crash: use it only while smxd is
stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, c, err := openEventLog(cmd, flags)
			if err != nil {
				return err
			}
			defer l.Close()
			var exists func(string) bool
			if checkContent {
				store, err := content.Open(c.CDBBaseDirectory, content.Options{})
				if err != nil {
					return fmt.Errorf("verify --content: %w", err)
				}
				defer store.Close()
				exists = store.Exists
			}
			rep, err := replay.Verify(cmd.Context(), replay.FromLog(l), exists)
			if err != nil {
				return err
			}
			if err := replay.WriteReport(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
			if !rep.OK() {
				return errVerifyFailed
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&checkContent, "content", false, "also check the content store (only while smxd is stopped)")
	return cmd
}
