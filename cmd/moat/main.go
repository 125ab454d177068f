// Command moat is a secure front door for Streamlit and other web apps: one
// binary, one YAML file. This package only wires the CLI; the work is done
// under internal/.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		var ce config.Errors
		if errors.As(err, &ce) {
			fmt.Fprintln(os.Stderr, ce.Error())
			fmt.Fprintf(os.Stderr, "%d error(s) in the configuration\n", len(ce))
		} else {
			fmt.Fprintln(os.Stderr, "moat:", err)
		}
		os.Exit(1)
	}
}

// subcommands is filled by each command's file, so adding a command touches
// one file.
var subcommands []func() *cobra.Command

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "moat",
		Short:         "A secure front door for Streamlit and other data apps",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, sub := range subcommands {
		root.AddCommand(sub())
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print moat's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "moat", version)
		},
	})
	return root
}

// configFlag adds the -c/--config flag every command that reads the
// configuration takes.
func configFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVarP(path, "config", "c", "moat.yaml", "configuration file")
}
