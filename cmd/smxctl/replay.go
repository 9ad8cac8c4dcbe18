package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/replay"
)

// replayOptions are the flags of smxctl replay.
type replayOptions struct {
	from, to, format string
	filter           replay.Filter
	types            []string
	follow           bool
	interval         time.Duration
	// wait blocks until the next look at the log in --follow mode; tests
	// replace the ticker with a channel they drive.
	wait func(ctx context.Context) error
}

func newReplayCmd(flags *globalFlags) *cobra.Command {
	return newReplayCmdWith(flags, nil)
}

func newReplayCmdWith(flags *globalFlags, wait func(ctx context.Context) error) *cobra.Command {
	o := &replayOptions{wait: wait}
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Print the events of the log, one a line",
		Long: `Replay prints the events of the event log in order, one a line: the
sequence number, the time (RFC 3339, UTC), the event type, the ss_ta (with
":index <address>" for an event on one recipient), then name=value fields.
Values with spaces are quoted.

--from and --to take a sequence number, an RFC 3339 time, a local time
("2025-03-01 14:05", "2025-03-01") or a duration before now ("-2h"); both
are inclusive. --msg, --rcpt, --sender and --type select events (they
combine with "and"; addresses match without regard to case, "<>" is the
null sender; --type takes catalogue names such as RcptDeferred, several
separated by commas). --follow keeps reading as smxd appends.

--format json prints one JSON object a line with the keys seq, time, type,
txn, rcpt (-1 for the whole transaction), addr (when the event concerns one
recipient whose address is known) and payload (the event's fields under
the catalogue's names, see docs/eventlog.md). These keys are stable.

The log is read from a consistent copy, so replay is safe while smxd runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplay(cmd, flags, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "first event: SEQ or TIME")
	f.StringVar(&o.to, "to", "", "last event: SEQ or TIME")
	f.StringVar(&o.filter.Txn, "msg", "", "only the events of this ss_ta")
	f.StringVar(&o.filter.Rcpt, "rcpt", "", "only events that concern this recipient address")
	f.StringVar(&o.filter.Sender, "sender", "", "only events of messages from this sender (<> for the null sender)")
	f.StringSliceVar(&o.types, "type", nil, "only events of these types (RcptDeferred,RcptFailed,...)")
	f.BoolVar(&o.follow, "follow", false, "keep printing new events as smxd appends them")
	f.DurationVar(&o.interval, "interval", time.Second, "how often --follow looks for new events")
	f.StringVar(&o.format, "format", "text", "text or json")
	return cmd
}

func runReplay(cmd *cobra.Command, flags *globalFlags, o *replayOptions) error {
	if o.format != "text" && o.format != "json" {
		return fmt.Errorf("--format: %q is neither text nor json", o.format)
	}
	for _, name := range o.types {
		t, err := log.ParseEventType(strings.TrimSpace(name))
		if err != nil {
			return fmt.Errorf("--type: %w", err)
		}
		o.filter.Types = append(o.filter.Types, t)
	}
	from, err := parsePoint("from", o.from)
	if err != nil {
		return err
	}
	to, err := parsePoint("to", o.to)
	if err != nil {
		return err
	}
	if o.follow && !to.IsEnd() {
		return fmt.Errorf("--follow reads to the end of the log; it does not go with --to")
	}
	if from.IsEnd() {
		from = replay.Point{Seq: 1}
	}
	ctx := cmd.Context()
	l, c, err := openEventLog(cmd, flags)
	if err != nil {
		return err
	}
	// The state before --from names the recipients of the events shown.
	r, err := replay.RebuildBefore(ctx, replay.FromLog(l), from)
	if err != nil {
		l.Close()
		return err
	}
	out := bufio.NewWriter(cmd.OutOrStdout())
	visit := func(e log.Event, q *projections.Queue) error {
		if !o.filter.Match(e, q) {
			return nil
		}
		if o.format == "json" {
			return replay.WriteJSON(out, e, q)
		}
		_, err := fmt.Fprintln(out, replay.Line(e, q))
		return err
	}
	err = r.Run(ctx, to, visit)
	l.Close()
	if err != nil {
		out.Flush()
		return err
	}
	if !o.follow {
		return out.Flush()
	}
	wait := o.wait
	if wait == nil {
		ticker := time.NewTicker(o.interval)
		defer ticker.Stop()
		wait = func(ctx context.Context) error {
			select {
			case <-ticker.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	// A read-only log does not see later appends: reopen it each time.
	dir := c.QMGR.EventLog.Directory
	for {
		if err := out.Flush(); err != nil {
			return err
		}
		if err := wait(ctx); err != nil {
			return nil // interrupted: the normal end of --follow
		}
		l, err := openEventLogDir(dir)
		if err != nil {
			return err
		}
		r.Use(replay.FromLog(l))
		err = r.Run(ctx, replay.Point{}, visit)
		l.Close()
		if err != nil {
			if ctx.Err() != nil {
				return out.Flush()
			}
			return err
		}
	}
}
