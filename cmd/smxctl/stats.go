package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/replay"
)

func newStatsCmd(flags *globalFlags) *cobra.Command {
	var from, to string
	var utc bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count traffic per destination, in the spirit of mailstats",
		Long: `Stats counts what the log records between --from and --to (both
inclusive; the whole log without them): messages, recipients and bytes
received, then per destination the recipients delivered (msgsto), their
bytes (bytes_to, in kilobytes rounded up), deferrals (msgsdef), permanent
failures (msgsbnc) and expiries (msgsexp), and the totals.

--from and --to take a sequence number, an RFC 3339 time, a local time
("2025-03-01 14:05") or a duration before now ("-24h"). Safe while smxd
runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			start, err := parsePoint("from", from)
			if err != nil {
				return err
			}
			end, err := parsePoint("to", to)
			if err != nil {
				return err
			}
			l, _, err := openEventLog(cmd, flags)
			if err != nil {
				return err
			}
			defer l.Close()
			t, err := replay.MeasureTraffic(cmd.Context(), replay.FromLog(l), start, end)
			if err != nil {
				return err
			}
			loc := time.Local
			if utc {
				loc = time.UTC
			}
			return replay.WriteStats(cmd.OutOrStdout(), t, loc)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first event counted: SEQ or TIME")
	cmd.Flags().StringVar(&to, "to", "", "last event counted: SEQ or TIME")
	cmd.Flags().BoolVar(&utc, "utc", false, "print times in UTC rather than local time")
	return cmd
}
