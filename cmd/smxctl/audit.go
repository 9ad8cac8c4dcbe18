package main

import (
	"bufio"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/replay"
)

func newAuditCmd(flags *globalFlags) *cobra.Command {
	var utc bool
	cmd := &cobra.Command{
		Use:   "audit SS_TA|MESSAGE-ID",
		Short: "Tell the whole story of one message",
		Long: `Audit finds the message with that ss_ta, or the messages with that
Message-ID (with or without angle brackets), and prints its story: one line
per event (when, sequence number, the recipient it concerns, what happened,
with the replies and reasons), then each recipient's outcome, then the DSNs
the message caused, each with its own story.

It reads the whole log, the archive included; it is safe while smxd runs.
It exits with an error when no message matches.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, _, err := openEventLog(cmd, flags)
			if err != nil {
				return err
			}
			defer l.Close()
			stories, err := replay.Audit(cmd.Context(), replay.FromLog(l), args[0])
			if err != nil {
				return err
			}
			if len(stories) == 0 {
				return fmt.Errorf("audit: no message with ss_ta or Message-ID %s", args[0])
			}
			loc := time.Local
			if utc {
				loc = time.UTC
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			for i, s := range stories {
				if i > 0 {
					fmt.Fprintln(out)
				}
				if err := replay.WriteStory(out, s, loc); err != nil {
					return err
				}
			}
			return out.Flush()
		},
	}
	cmd.Flags().BoolVar(&utc, "utc", false, "print times in UTC rather than local time")
	return cmd
}
