package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/cmd/smxd/buildinfo"
	"github.com/smx-mta/smx/cmd/smxd/conf"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "smxd",
		Short:         "smxd is the smx mail transfer agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd())
	root.AddCommand(newConfigCmd())
	root.AddCommand(newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of smxd",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), buildinfo.String("smxd"))
			return err
		},
	}
}

// loadConfig loads the file at path, or the embedded default when path is
// empty, and prints the warnings to the command's stderr.
func loadConfig(cmd *cobra.Command, path string) (*conf.Config, error) {
	var c *conf.Config
	var err error
	if path == "" {
		c, err = conf.Default()
	} else {
		c, err = conf.Load(path)
	}
	if err != nil {
		return nil, err
	}
	for _, w := range c.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), w)
	}
	return c, nil
}
