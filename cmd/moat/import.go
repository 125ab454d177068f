package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/gcpimport"
)

func init() { subcommands = append(subcommands, newImportCommand) }

func newImportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Write a moat configuration from another front door's setup",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newImportGCPCommand())
	return cmd
}

func newImportGCPCommand() *cobra.Command {
	var output, appURL string
	var vars []string
	var force bool
	cmd := &cobra.Command{
		Use:   "gcp DIR",
		Short: "Write moat.yaml from the Terraform of a Google Cloud load balancer, IAP and Cloud Armor",
		Long: "Read the Terraform in DIR (URL map, backend services with IAP, Cloud Armor policies, IAP IAM\n" +
			"members, managed certificates, the Cloud Run service behind them, variables) and write one\n" +
			"moat configuration: hosts and paths as routes, IAM members as allow lists, Cloud Armor rules\n" +
			"with the same priorities and actions, ACME for the certificate's domains, the app on loopback.\n" +
			"What moat has no equivalent for becomes a comment saying what to do instead.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := gcpimport.Options{AppURL: appURL, Vars: map[string]string{}}
			for _, v := range vars {
				name, value, ok := strings.Cut(v, "=")
				if !ok || name == "" {
					return fmt.Errorf("--var %q: write NAME=VALUE", v)
				}
				opts.Vars[name] = value
			}
			res, err := gcpimport.Import(args[0], opts)
			if err != nil {
				return err
			}
			if output == "-" {
				_, err := cmd.OutOrStdout().Write(res.YAML)
				return err
			}
			return writeImport(cmd.OutOrStdout(), output, res, force)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "moat.yaml", `file to write ("-" for standard output)`)
	cmd.Flags().StringArrayVar(&vars, "var", nil, "set a Terraform variable, as terraform -var NAME=VALUE does (repeatable)")
	cmd.Flags().StringVar(&appURL, "app-url", "", "where the app runs next to moat (default: http://127.0.0.1 and the port the Terraform gives)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite the output file if it exists")
	return cmd
}

// writeImport writes the configuration, checks it as `moat check` does
// when the environment it names is set, and says what is left to do.
func writeImport(out io.Writer, path string, res *gcpimport.Result, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists; choose another file with -o, or pass --force to overwrite it", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(res.YAML); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s\n", path)
	var unset []string
	for _, name := range res.Env {
		if _, ok := os.LookupEnv(name); !ok {
			unset = append(unset, name)
		}
	}
	if len(unset) == 0 {
		cfg, err := checkConfig(path)
		if err != nil {
			return fmt.Errorf("the written configuration does not pass moat check (please report this):\n%w", err)
		}
		fmt.Fprintf(out, "moat check: the configuration is valid (%d routes, %d backends)\n", len(cfg.Routes), len(cfg.Backends))
	} else {
		fmt.Fprintf(out, "moat check passes once %s %s set\n", strings.Join(unset, " and "), map[bool]string{true: "is", false: "are"}[len(unset) == 1])
	}
	fmt.Fprintln(out, "\nbefore moat serve:")
	for _, t := range res.Todo {
		fmt.Fprintf(out, "  - %s\n", t)
	}
	return nil
}
