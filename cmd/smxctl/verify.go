package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/replay"
)

// errVerifyFailed makes smxctl exit non-zero after the report is printed.
var errVerifyFailed = errors.New("verify: the log breaks invariants (see the report)")

func newVerifyCmd(flags *globalFlags) *cobra.Command {
	checkContent := true
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the invariants of the event log and the bodies of the queued mail",
		Long: `Verify reads the whole event log from its first event and checks that the
queue it describes is sound: each recipient has at most one terminal event
and nothing happens to it after that; every event concerns a received
message and an existing recipient, and none comes after the message's
content was released; a body is released only when nothing needs it; the
reference counts match at the end; the newest snapshot holds exactly the
state the log gives at its sequence number; every record can be read; and
the body of every message still queued is in the content store
(CDB_base_directory).

It prints a summary, the count of violations per rule, and each violation
with the sequence number, ss_ta and recipient where it happened, and exits
non-zero when there is any.

It is safe while smxd runs: the log is read from a consistent copy, and the
content store is opened read-only (no lock taken, nothing written). A body
smxd released after verify read the log is not reported missing: verify
reads the events appended since and finds the message's ContentReleased.
--content=false checks the log alone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, c, err := openEventLog(cmd, flags)
			if err != nil {
				return err
			}
			defer l.Close()
			var exists func(string) bool
			if checkContent {
				// After the log: every body the log's copy still needs was
				// committed before the store is read (see excuseReleased
				// for what smxd releases meanwhile).
				store, err := content.OpenReadOnly(c.CDBBaseDirectory, content.Options{})
				if err != nil {
					return fmt.Errorf("verify: %w (--content=false checks the log alone)", err)
				}
				defer store.Close()
				exists = store.Exists
			}
			rep, err := replay.Verify(cmd.Context(), replay.FromLog(l), exists)
			if err != nil {
				return err
			}
			if checkContent {
				if err := excuseReleased(cmd.Context(), rep, func() (replay.Source, func() error, error) {
					l2, err := openEventLogDir(c.QMGR.EventLog.Directory)
					if err != nil {
						return nil, nil, err
					}
					return replay.FromLog(l2), l2.Close, nil
				}); err != nil {
					return fmt.Errorf("verify: read the events appended since: %w", err)
				}
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
	cmd.Flags().BoolVar(&checkContent, "content", true, "check that the body of every queued message is in the content store (read-only, safe while smxd runs)")
	return cmd
}

// excuseReleased drops from rep the bodies reported missing whose message
// smxd released after verify read the log. smxd appends ContentReleased and
// only then releases the body, so a body that was released before the
// content store answered has its ContentReleased in the log before that
// answer: a copy of the log opened afterwards (reopen) holds it among the
// events after rep.LastSeq. A body missing without one is really missing.
//
// The listed violations are the ones it can drop: in a report cut at
// replay.MaxViolations the unlisted ones stay counted.
func excuseReleased(ctx context.Context, rep *replay.Report, reopen func() (replay.Source, func() error, error)) error {
	missing := map[string]bool{}
	for _, v := range rep.Violations {
		if v.Rule == "body-missing" {
			missing[v.Txn] = true
		}
	}
	if len(missing) == 0 {
		return nil
	}
	src, closeSrc, err := reopen()
	if err != nil {
		return err
	}
	defer closeSrc()
	released := map[string]bool{}
	it := src.Iter(rep.LastSeq + 1)
	defer it.Close()
	for n := 0; it.Next(); n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if e := it.Event(); e.Type() == log.TypeContentReleased && missing[e.Txn] {
			released[e.Txn] = true
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	kept := rep.Violations[:0]
	for _, v := range rep.Violations {
		if v.Rule == "body-missing" && released[v.Txn] {
			rep.Count--
			if rep.ByRule[v.Rule]--; rep.ByRule[v.Rule] == 0 {
				delete(rep.ByRule, v.Rule)
			}
			continue
		}
		kept = append(kept, v)
	}
	rep.Violations = kept
	return nil
}
