package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// defaultGrace bounds a clean stop after SIGINT or SIGTERM: sessions and
// delivery attempts in progress get this long to finish.
const defaultGrace = 30 * time.Second

func newRunCmd() *cobra.Command {
	var file, cpuprofile, pprofAddr string
	var debug, allowRoot bool
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run smxd in the foreground",
		Long: "Run loads the configuration (the embedded default without -f), checks the permissions of its " +
			"directories and maps, binds its sockets, drops to the configured user when started as root, " +
			"recovers the queues from the event log and starts serving.\n\n" +
			"Signals: SIGINT and SIGTERM stop smxd cleanly (sessions and delivery attempts get --grace to " +
			"finish, then a snapshot is written); SIGHUP reloads the maps and the reloadable parts of " +
			"smx.conf; SIGUSR2 reopens the log files after rotation.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, file)
			if err != nil {
				return err
			}
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			debugLog := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))

			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			reopen := make(chan os.Signal, 1)
			signal.Notify(reopen, syscall.SIGUSR2)
			defer signal.Stop(reopen)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)

			prof, err := startProfiling(cpuprofile, pprofAddr, debugLog)
			if err != nil {
				return err
			}
			defer func() {
				if err := prof.stop(); err != nil {
					debugLog.Error("profiling", "err", err)
				}
			}()
			d := newDaemon(c, debugLog, allowRoot, cmd.ErrOrStderr())
			if err := d.Start(ctx); err != nil {
				return err
			}
			for running := true; running; {
				select {
				case <-ctx.Done():
					running = false
				case <-reopen:
					if err := d.Reopen(); err != nil {
						debugLog.Error("reopen log files", "err", err)
					}
				case <-hup:
					debugLog.Info("SIGHUP: reloading")
					if _, err := d.reload(); err != nil {
						debugLog.Error("reload", "err", err)
					}
				}
			}
			debugLog.Info("stopping", "grace", grace)
			stopCtx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			if err := d.Stop(stopCtx); err != nil {
				// What was left when the grace period ended was closed;
				// every acknowledged message is in the log all the same.
				debugLog.Warn("stop", "err", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "configuration file (default: the embedded default)")
	cmd.Flags().BoolVar(&debug, "debug", false, "write debug logging (log/slog) to stderr")
	cmd.Flags().BoolVar(&allowRoot, "allow-root", false,
		"keep running as root when smx.conf names no user (for development machines and containers)")
	cmd.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file (for go tool pprof)")
	cmd.Flags().StringVar(&pprofAddr, "pprof", "", "serve Go's pprof handlers (/debug/pprof/) on this loopback address:port")
	cmd.Flags().DurationVar(&grace, "grace", defaultGrace, "how long sessions and delivery attempts may take to finish at stop")
	return cmd
}
