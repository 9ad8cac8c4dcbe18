package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/cmd/smxd/buildinfo"
)

func newVersionCmd(*globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of smxctl",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), buildinfo.String("smxctl"))
			return err
		},
	}
}
