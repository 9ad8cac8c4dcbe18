package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smx-mta/smx/cmd/smxd/conf"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check or print the configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Check a configuration file (the embedded default without FILE)",
		Long: "Check parses, resolves and validates FILE. Errors name the file, line and column; " +
			"options that smx accepts but ignores are reported as warnings.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			if _, err := loadConfig(cmd, path); err != nil {
				return err
			}
			if path == "" {
				path = conf.DefaultName
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return err
		},
	})
	var file string
	dump := &cobra.Command{
		Use:   "dump",
		Short: "Print the effective configuration, every option with its value or default",
		Long: "Dump prints the configuration in smx.conf syntax with every option, defaults included " +
			"and paths made absolute, so that the output can be used as a configuration file.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, file)
			if err != nil {
				return err
			}
			return conf.Dump(cmd.OutOrStdout(), c)
		},
	}
	dump.Flags().StringVarP(&file, "file", "f", "", "configuration file (default: the embedded default)")
	cmd.AddCommand(dump)
	return cmd
}
