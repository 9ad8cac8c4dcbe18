package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/cmd/smxd/conf"
)

// loadConfig loads the configuration a command works on: the -f file, or
// smxd's embedded default. Warnings go to the command's stderr. The result
// is resolved: paths such as cfg.QueueDirectory and
// cfg.QMGR.EventLog.Directory are absolute.
func loadConfig(cmd *cobra.Command, flags *globalFlags) (*conf.Config, error) {
	var c *conf.Config
	var err error
	if flags.configFile == "" {
		c, err = conf.Default()
	} else {
		c, err = conf.Load(flags.configFile)
	}
	if err != nil {
		return nil, err
	}
	for _, w := range c.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), w)
	}
	return c, nil
}
