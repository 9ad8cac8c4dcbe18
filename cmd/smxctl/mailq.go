package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/replay"
)

func newMailqCmd(flags *globalFlags) *cobra.Command {
	var at string
	var utc bool
	cmd := &cobra.Command{
		Use:   "mailq",
		Short: "List the queue as sendmail's mailq does, now or as it was",
		Long: `Mailq lists the messages that still have recipients to deliver, in the
layout of sendmail's mailq: the ss_ta ('*' after it while an attempt is in
flight), the size, the time it was queued and the sender, then each
recipient with its last status in parentheses (the deferral reason, the
attempt in progress, a hold). "smxctl audit SS_TA" shows the whole story.

With --at it lists the queue as it was at that point: a sequence number, an
RFC 3339 time, a local time ("2025-03-01 14:05") or a duration before now
("-2h"). The queue is rebuilt from the newest snapshot before that point
and the log; this is safe while smxd runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			point, err := parsePoint("at", at)
			if err != nil {
				return err
			}
			l, c, err := openEventLog(cmd, flags)
			if err != nil {
				return err
			}
			defer l.Close()
			r, err := replay.Rebuild(cmd.Context(), replay.FromLog(l), point)
			if err != nil {
				return err
			}
			loc := time.Local
			if utc {
				loc = time.UTC
			}
			return replay.WriteMailq(cmd.OutOrStdout(), r.Queue(), l.Get, replay.MailqOptions{
				Directory: c.QueueDirectory,
				Location:  loc,
			})
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "list the queue as it was at SEQ or TIME")
	cmd.Flags().BoolVar(&utc, "utc", false, "print times in UTC rather than local time")
	return cmd
}
