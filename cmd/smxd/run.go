package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// shutdownTimeout bounds a clean stop after SIGINT or SIGTERM.
const shutdownTimeout = 30 * time.Second

func newRunCmd() *cobra.Command {
	var file string
	var debug bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run smxd in the foreground",
		Long: "Run loads the configuration (the embedded default without -f), creates the queue directory, " +
			"opens the mail log and runs until SIGINT or SIGTERM. SIGUSR2 reopens log files for rotation.",
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

			d := newDaemon(c, debugLog)
			if err := d.Start(ctx); err != nil {
				return err
			}
			for running := true; running; {
				select {
				case <-ctx.Done():
					running = false
				case <-reopen:
					if err := d.Reopen(); err != nil {
						debugLog.Error("reopen mail log", "err", err)
					}
				}
			}
			stopCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			if err := d.Stop(stopCtx); err != nil {
				return fmt.Errorf("stop: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "configuration file (default: the embedded default)")
	cmd.Flags().BoolVar(&debug, "debug", false, "write debug logging (log/slog) to stderr")
	return cmd
}
