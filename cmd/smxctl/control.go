package main

// The commands that ask the running smxd over its control socket (qmgr
// control_socket; the protocol is described in package
// cmd/smxd/control): status, flush, hold, release, delete, requeue,
// redirect, reload, restart and config dump.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/cmd/smxd/control"
)

// callDaemon sends one request to the smxd of the configuration and
// decodes its result.
func callDaemon(cmd *cobra.Command, flags *globalFlags, req control.Request, result any) error {
	c, err := loadConfig(cmd, flags)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
	defer cancel()
	cl, err := control.Dial(ctx, c.QMGR.ControlSocket)
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.Call(ctx, req, result)
}

// parseTarget reads "SS_TA" or "SS_TA:INDEX".
func parseTarget(arg string) (txn string, rcpt *int32, err error) {
	txn, idx, ok := strings.Cut(arg, ":")
	if txn == "" {
		return "", nil, fmt.Errorf("%q: expected a queue id (ss_ta), optionally with :recipient-index", arg)
	}
	if ok {
		n, err := strconv.ParseInt(idx, 10, 32)
		if err != nil || n < 0 {
			return "", nil, fmt.Errorf("%q: the recipient index after ':' must be a number", arg)
		}
		i := int32(n)
		rcpt = &i
	}
	return txn, rcpt, nil
}

func newStatusCmd(flags *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running smxd: uptime, queues, sessions, rates, disk, load, components",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st control.Status
			if err := callDaemon(cmd, flags, control.Request{Command: control.CmdStatus}, &st); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(out, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func printStatus(out io.Writer, st control.Status) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "smxd\t%s, pid %d, host %s\n", st.Version, st.PID, st.Hostname)
	fmt.Fprintf(w, "up\t%s (since %s)\n", (time.Duration(st.UptimeSec) * time.Second).String(), st.Started.Local().Format("2006-01-02 15:04:05"))
	load := st.Load
	if st.LoadReason != "" {
		load += " (" + st.LoadReason + ")"
	}
	fmt.Fprintf(w, "load\t%s\n", load)
	q := st.Queue
	fmt.Fprintf(w, "queues\tIQDB %d/%d  AQ %d/%d  DEFEDB %d\n", q.IQDB, q.IQDBMax, q.AQ, q.AQMax, q.DEFEDB)
	names := make([]string, 0, len(st.Sessions))
	for n := range st.Sessions {
		names = append(names, n)
	}
	sort.Strings(names)
	var sess []string
	for _, n := range names {
		sess = append(sess, fmt.Sprintf("%s %d", n, st.Sessions[n]))
	}
	fmt.Fprintf(w, "sessions\t%s\n", strings.Join(sess, "  "))
	fmt.Fprintf(w, "rates\treceived %.1f/min (5 min: %.1f)  delivered %.1f/min (5 min: %.1f)\n",
		st.Rates.Received1m, st.Rates.Received5m, st.Rates.Delivered1m, st.Rates.Delivered5m)
	t := st.Totals
	fmt.Fprintf(w, "since start\tconnections %d  transactions %d  delivered %d  deferred %d  bounced %d\n",
		t.Connections, t.Transactions, t.Delivered, t.Deferred, t.Bounced)
	pct := 0.0
	if st.Disk.Total > 0 {
		pct = 100 * float64(st.Disk.Free) / float64(st.Disk.Total)
	}
	fmt.Fprintf(w, "disk\t%s: %s free of %s (%.0f%%)\n", st.Disk.Path, bytesString(st.Disk.Free), bytesString(st.Disk.Total), pct)
	fmt.Fprintf(w, "event log\tlast seq %d, snapshot at %d\n", st.LastSeq, st.SnapshotSeq)
	w.Flush()
	fmt.Fprintln(out, "components:")
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, c := range st.Components {
		state := "running"
		if !c.Running {
			state = "stopped"
		}
		line := fmt.Sprintf("  %s\t%s\trestarts %d", c.Name, state, c.Restarts)
		if c.LastError != "" {
			line += "\tlast error: " + c.LastError
		}
		fmt.Fprintln(w, line)
	}
	w.Flush()
}

func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, suffix := float64(n), "B"
	for _, s := range []string{"KB", "MB", "GB", "TB", "PB"} {
		if f < unit {
			break
		}
		f /= unit
		suffix = s
	}
	return fmt.Sprintf("%.1f %s", f, suffix)
}

func newFlushCmd(flags *globalFlags) *cobra.Command {
	var domain, msg, reason string
	cmd := &cobra.Command{
		Use:   "flush [--domain DOMAIN | --msg SS_TA[:INDEX]]",
		Short: "Try deferred mail now: all of DEFEDB, a domain's (as ETRN does), or one message",
		Long: "Flush makes deferred recipients due now and forgets the host status of their destinations, " +
			"like sendmail's forced queue run (-q, -qR DOMAIN). Without options it flushes every deferred " +
			"recipient; --domain those of a domain and its subdomains; --msg one message or recipient.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := control.Request{Command: control.CmdFlush, Domain: domain, Reason: reason}
			if msg != "" {
				txn, rcpt, err := parseTarget(msg)
				if err != nil {
					return err
				}
				req.Txn, req.Rcpt = txn, rcpt
			}
			var res control.FlushResult
			if err := callDaemon(cmd, flags, req, &res); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "requeued %d recipient(s)\n", res.Requeued)
			return err
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "flush the recipients of this domain and its subdomains")
	cmd.Flags().StringVar(&msg, "msg", "", "flush one message (SS_TA) or recipient (SS_TA:INDEX)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the operator event")
	cmd.MarkFlagsMutuallyExclusive("domain", "msg")
	return cmd
}

// newActionCmd builds hold, release, delete and requeue.
func newActionCmd(flags *globalFlags, command, short, long string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   command + " SS_TA[:INDEX]...",
		Short: short,
		Long: long + " A target is a queue id (ss_ta, as mailq shows it) for the whole message, or " +
			"ss_ta:index for one recipient (the index as audit shows it). The event records your user name.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				txn, rcpt, err := parseTarget(a)
				if err != nil {
					return err
				}
				var res control.ActionResult
				if err := callDaemon(cmd, flags, control.Request{Command: command, Txn: txn, Rcpt: rcpt, Reason: reason}, &res); err != nil {
					return fmt.Errorf("%s %s: %w", command, a, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s: done (operator %s)\n", command, a, res.Operator)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the operator event")
	return cmd
}

func newRedirectCmd(flags *globalFlags) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "redirect SS_TA[:INDEX] NEW-ADDRESS",
		Short: "Send a queued recipient, or a whole queued message, to another address",
		Long: "Redirect with SS_TA:INDEX finishes that recipient and adds NEW-ADDRESS to the same message in its " +
			"place. With SS_TA alone it redirects the whole message: every recipient still queued is finished " +
			"and ONE new recipient, NEW-ADDRESS, takes all their places (recipients already delivered or " +
			"failed stay as they are). The new recipient is resolved and delivered like any other. The event " +
			"records your user name.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			txn, rcpt, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			addr := strings.TrimSuffix(strings.TrimPrefix(args[1], "<"), ">")
			if addr == "" {
				return fmt.Errorf("redirect %s: the new address is empty", args[0])
			}
			var res control.ActionResult
			if err := callDaemon(cmd, flags, control.Request{Command: control.CmdRedirect, Txn: txn, Rcpt: rcpt,
				Addr: addr, Reason: reason}, &res); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "redirect %s to <%s>: done (operator %s)\n", args[0], addr, res.Operator)
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the operator event")
	return cmd
}

func newReloadCmd(flags *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Reload the maps and the reloadable parts of smx.conf (as SIGHUP does)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res control.ReloadResult
			if err := callDaemon(cmd, flags, control.Request{Command: control.CmdReload}, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "reloaded: %s\n", strings.Join(res.Reloaded, ", "))
			if len(res.NeedRestart) > 0 {
				fmt.Fprintf(out, "changed, effective after a restart of smxd: %s\n", strings.Join(res.NeedRestart, ", "))
			}
			return nil
		},
	}
}

func newRestartCmd(flags *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "restart COMPONENT",
		Short: "Restart a component of the running smxd with its restart dependencies",
		Long: "Restart stops and starts one supervised component (storage, smar, qmgr, \"smtps NAME\", control, " +
			"metrics; see status) together with the components that depend on it, as the supervisor does " +
			"after a failure, without the backoff. Restarting qmgr recovers the queues from the log again.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res control.RestartResult
			if err := callDaemon(cmd, flags, control.Request{Command: control.CmdRestart, Component: args[0]}, &res); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "restarted: %s\n", strings.Join(res.Restarted, ", "))
			return err
		},
	}
}

func newConfigDumpCmd(flags *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "dump",
		Short: "Print the running smxd's configuration, every option with its value",
		Long: "Dump asks the running smxd for the configuration it runs with, in smx.conf syntax: the file " +
			"it started with and the reloadable parts of the last reload (smxd config dump prints a file " +
			"instead).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res control.ConfigResult
			if err := callDaemon(cmd, flags, control.Request{Command: control.CmdConfig}, &res); err != nil {
				return err
			}
			_, err := io.WriteString(cmd.OutOrStdout(), res.Text)
			return err
		},
	}
}

// controlCommands are the commands of this file, for root.go.
func controlCommands(flags *globalFlags) []*cobra.Command {
	return []*cobra.Command{
		newStatusCmd(flags),
		newFlushCmd(flags),
		newActionCmd(flags, control.CmdHold, "Hold a queued message or recipient: no delivery until release",
			"Hold stops delivery of a message or recipient until release; it stays in the queue and expires as usual."),
		newActionCmd(flags, control.CmdRelease, "Release a held message or recipient",
			"Release undoes hold."),
		newActionCmd(flags, control.CmdDelete, "Delete a queued message or recipient without a bounce",
			"Delete removes a message or recipient from the queue for good, without a DSN."),
		newActionCmd(flags, control.CmdRequeue, "Make a queued message or recipient due now",
			"Requeue makes a deferred message or recipient due now and forgets the host status of its destinations."),
		newRedirectCmd(flags),
		newReloadCmd(flags),
		newRestartCmd(flags),
	}
}
