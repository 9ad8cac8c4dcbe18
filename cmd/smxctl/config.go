package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/cmd/smxd/conf"
)

func newConfigCmd(flags *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check the configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Check a configuration file (the -f file, or the embedded default)",
		Long: "Check parses, resolves and validates the file as smxd would. Errors name the file, " +
			"line and column; options smx accepts but ignores are reported as warnings.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := *flags
			if len(args) == 1 {
				f.configFile = args[0]
			}
			if _, err := loadConfig(cmd, &f); err != nil {
				return err
			}
			name := f.configFile
			if name == "" {
				name = conf.DefaultName
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", name)
			return err
		},
	})
	return cmd
}
