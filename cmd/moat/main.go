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
		fmt.Fprint(os.Stderr, errorText(err))
		os.Exit(1)
	}
}

// errorText is what a person sees for err: every configuration problem on
// its own line with a count, or one line for anything else.
func errorText(err error) string {
	var ce config.Errors
	if errors.As(err, &ce) {
		return fmt.Sprintf("%s\n%d error(s) in the configuration; fix them and run moat check again\n", ce.Error(), len(ce))
	}
	return "moat: " + err.Error() + "\n"
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
