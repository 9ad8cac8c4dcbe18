package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/replay"
)

// openEventLog opens the event log of the configuration (-f) read-only: the
// commands that read history use it, and it is safe while smxd runs (see
// log.OpenReadOnly). The caller closes the log.
func openEventLog(cmd *cobra.Command, flags *globalFlags) (*log.Log, *conf.Config, error) {
	c, err := loadConfig(cmd, flags)
	if err != nil {
		return nil, nil, err
	}
	l, err := openEventLogDir(c.QMGR.EventLog.Directory)
	if err != nil {
		return nil, nil, err
	}
	return l, c, nil
}

func openEventLogDir(dir string) (*log.Log, error) {
	if _, err := os.Stat(filepath.Join(dir, "pebble")); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no event log in %s (check queue_directory and qmgr.event_log.directory of the configuration given with -f)", dir)
	}
	return log.OpenReadOnly(dir, log.Options{})
}

// parsePoint reads a --from, --to or --at value: a sequence number, an RFC
// 3339 time, a local "YYYY-MM-DD[ HH:MM[:SS]]", or "-DURATION" before now.
func parsePoint(flag, value string) (replay.Point, error) {
	if value == "" {
		return replay.Point{}, nil
	}
	p, err := replay.ParsePoint(value, time.Now(), time.Local)
	if err != nil {
		return replay.Point{}, fmt.Errorf("--%s: %w", flag, err)
	}
	return p, nil
}
