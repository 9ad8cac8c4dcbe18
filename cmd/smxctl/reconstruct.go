package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/log"
)

// reconstructBatch is how many TxnReceived events go into one Append.
const reconstructBatch = 256

// maxHeaderScan bounds how much of a body reconstruct reads looking for the
// Message-ID and Received: header fields.
const maxHeaderScan = 1 << 20

func newReconstructCmd(flags *globalFlags) *cobra.Command {
	var cdbDir, logDir string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "reconstruct",
		Short: "Rebuild the queue from the content store after the event log is lost",
		Long: `Reconstruct scans the content store (CDB) and writes, for every body that has
not been released, a TxnReceived event with the envelope stored beside it into
a fresh event log. When smxd starts on that log, every recipient of those
messages is queued again. What the lost log knew beyond that (deliveries,
deferrals, bounces already sent) is gone, so recipients that were already
delivered get the message again: delivery is at least once.

Stop smxd first (reconstruct takes the CDB lock), and move the damaged event
log aside: reconstruct refuses to write into a log that holds events. Every
body is read and checked; damaged ones are reported and left out, and then
reconstruct exits with an error after writing the rest. With --dry-run it
only prints what it would write; a dry run opens the CDB read-only (no
lock, nothing written), so it also works while smxd runs.

The directories default to CDB_base_directory and qmgr.event_log.directory
of the configuration (-f).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cdbDir == "" || logDir == "" {
				c, err := loadConfig(cmd, flags)
				if err != nil {
					return err
				}
				if cdbDir == "" {
					cdbDir = c.CDBBaseDirectory
				}
				if logDir == "" {
					logDir = c.QMGR.EventLog.Directory
				}
			}
			return reconstruct(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cdbDir, logDir, dryRun)
		},
	}
	cmd.Flags().StringVar(&cdbDir, "cdb", "", "content store directory (default: CDB_base_directory)")
	cmd.Flags().StringVar(&logDir, "log", "", "event log directory to create (default: qmgr event_log directory)")
	cmd.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "print the messages found, write nothing")
	return cmd
}

// found is a message reconstruct will queue again.
type found struct {
	body      content.Body
	messageID string
	hops      int
}

func reconstruct(ctx context.Context, out, errOut io.Writer, cdbDir, logDir string, dryRun bool) error {
	// A dry run reads the store as a reader beside smxd does: no lock, no
	// recovery, nothing written. The real run takes the lock, so that no
	// smxd commits or releases bodies while the new log is written.
	open := content.Open
	if dryRun {
		open = content.OpenReadOnly
	}
	store, err := open(cdbDir, content.Options{CompactInterval: -1})
	if err != nil {
		return err
	}
	defer store.Close()

	var msgs []found
	var damaged int
	err = store.Scan(ctx, func(b content.Body) error {
		if b.Err != nil {
			damaged++
			fmt.Fprintf(errOut, "damaged: %s: envelope unreadable: %v\n", b.Ref, b.Err)
			return nil
		}
		if b.Envelope.Txn == "" || len(b.Envelope.Rcpts) == 0 {
			damaged++
			fmt.Fprintf(errOut, "damaged: %s: envelope without transaction id or recipients\n", b.Ref)
			return nil
		}
		f := found{body: b}
		// Opening checks the whole body; a body that cannot be delivered
		// is not queued.
		r, err := store.Open(b.Ref)
		if err != nil {
			damaged++
			fmt.Fprintf(errOut, "damaged: %s ss_ta=%s: %v\n", b.Ref, b.Envelope.Txn, err)
			return nil
		}
		f.messageID, f.hops = scanHeader(r)
		r.Close()
		msgs = append(msgs, f)
		return nil
	})
	if err != nil {
		return err
	}
	// The log is chronological; compaction moves old bodies into new
	// segments, so the scan order is not.
	slices.SortStableFunc(msgs, func(a, b found) int {
		return a.body.Envelope.ReceivedAt.Compare(b.body.Envelope.ReceivedAt)
	})
	msgs = dropDuplicateTxns(msgs, errOut)

	if dryRun {
		for _, m := range msgs {
			e := m.body.Envelope
			rcpts := make([]string, len(e.Rcpts))
			for i, r := range e.Rcpts {
				rcpts[i] = "<" + r.Addr + ">"
			}
			fmt.Fprintf(out, "%s ss_ta=%s received=%s size=%d from=<%s> to=%s\n",
				m.body.Ref, e.Txn, e.ReceivedAt.Format("2006-01-02T15:04:05Z07:00"), m.body.Size,
				e.Sender, strings.Join(rcpts, ","))
		}
		fmt.Fprintf(out, "%d messages would be queued again, %d damaged\n", len(msgs), damaged)
		return reconstructResult(damaged)
	}

	l, err := log.Open(logDir, log.Options{})
	if err != nil {
		return err
	}
	if last := l.LastSeq(); last != 0 {
		l.Close()
		return fmt.Errorf("event log %s holds %d events: move it aside, reconstruct writes a fresh one", logDir, last)
	}
	events := make([]log.Event, 0, reconstructBatch)
	flush := func() error {
		if len(events) == 0 {
			return nil
		}
		if _, err := l.Append(ctx, events...); err != nil {
			return err
		}
		events = events[:0]
		return nil
	}
	for _, m := range msgs {
		events = append(events, txnReceived(m))
		if len(events) == reconstructBatch {
			if err := flush(); err != nil {
				l.Close()
				return err
			}
		}
	}
	if err := flush(); err != nil {
		l.Close()
		return err
	}
	if err := l.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d messages queued again in %s, %d damaged\n", len(msgs), logDir, damaged)
	return reconstructResult(damaged)
}

func reconstructResult(damaged int) error {
	if damaged > 0 {
		return fmt.Errorf("%d damaged bodies left out (listed above)", damaged)
	}
	return nil
}

// dropDuplicateTxns keeps one body per ss_ta, the last committed. Two
// bodies for one transaction happen only if a commit failed after its body
// reached the disk and the transaction was retried.
func dropDuplicateTxns(msgs []found, errOut io.Writer) []found {
	last := make(map[string]int, len(msgs))
	for i, m := range msgs {
		if j, ok := last[m.body.Envelope.Txn]; !ok || msgs[j].body.Stamp.Before(m.body.Stamp) {
			last[m.body.Envelope.Txn] = i
		}
	}
	kept := msgs[:0]
	for i, m := range msgs {
		if last[m.body.Envelope.Txn] != i {
			fmt.Fprintf(errOut, "duplicate: %s ss_ta=%s: another body of this transaction is newer; left out\n",
				m.body.Ref, m.body.Envelope.Txn)
			continue
		}
		kept = append(kept, m)
	}
	return kept
}

// txnReceived rebuilds the event the SMTP server wrote for m.
func txnReceived(m found) log.Event {
	e := m.body.Envelope
	return log.Event{
		Time: e.ReceivedAt,
		Txn:  e.Txn,
		Rcpt: log.NoRcpt,
		Payload: &log.TxnReceived{
			Session:       e.Session,
			Listener:      e.Listener,
			Sender:        e.Sender,
			Rcpts:         e.Rcpts,
			RET:           e.RET,
			ENVID:         e.ENVID,
			Size:          e.Size,
			Body:          e.Body,
			SMTPUTF8:      e.SMTPUTF8,
			ClientIP:      e.ClientIP,
			ClientPort:    e.ClientPort,
			ClientName:    e.ClientName,
			ClientResolve: e.ClientResolve,
			HELO:          e.HELO,
			Protocol:      e.Protocol,
			TLS:           e.TLS,
			Auth:          e.Auth,
			MessageID:     m.messageID,
			Hops:          m.hops,
			Content:       m.body.Ref,
			ContentSize:   m.body.Size,
			ReceivedAt:    e.ReceivedAt,
			DSNOf:         e.DSNOf,
		},
	}
}

// scanHeader returns the Message-ID and the number of Received: fields of
// the header section of a body. A header it cannot parse gives what was
// found before the damage.
func scanHeader(r io.Reader) (messageID string, hops int) {
	tp := textproto.NewReader(bufio.NewReader(io.LimitReader(r, maxHeaderScan)))
	h, err := tp.ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) && h == nil {
		return "", 0
	}
	return strings.TrimSpace(h.Get("Message-Id")), len(h.Values("Received"))
}
