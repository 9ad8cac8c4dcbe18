package main

import "github.com/spf13/cobra"

// globalFlags are the flags every command shares.
type globalFlags struct {
	// configFile is -f: the smx.conf to read ("" for the embedded default).
	configFile string
}

// newRootCmd builds smxctl. Each command lives in a file of its own
// (<topic>.go) with a newXxxCmd(*globalFlags) constructor; register it
// here with one line.
func newRootCmd() *cobra.Command {
	flags := &globalFlags{}
	root := &cobra.Command{
		Use:           "smxctl",
		Short:         "smxctl audits, shows and steers an smx mail system",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&flags.configFile, "file", "f", "",
		"smx.conf to read (default: smxd's embedded default configuration)")

	root.AddCommand(newVersionCmd(flags))
	configCmd := newConfigCmd(flags)
	configCmd.AddCommand(newConfigDumpCmd(flags))
	root.AddCommand(configCmd)
	root.AddCommand(newMapCmd(flags))
	root.AddCommand(newReconstructCmd(flags))
	root.AddCommand(newReplayCmd(flags))
	root.AddCommand(newAuditCmd(flags))
	root.AddCommand(newMailqCmd(flags))
	root.AddCommand(newVerifyCmd(flags))
	root.AddCommand(newStatsCmd(flags))
	root.AddCommand(controlCommands(flags)...)
	return root
}
