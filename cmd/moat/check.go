package main

import (
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/server"
	"github.com/moat-dev/moat/internal/tracing"
)

func init() { subcommands = append(subcommands, newCheckCommand) }

func newCheckCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate a configuration file and print the effective routing table",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := checkConfig(path)
			if err != nil {
				return err
			}
			printCheck(cmd.OutOrStdout(), cfg)
			return nil
		},
	}
	configFlag(cmd, &path)
	return cmd
}

// checkConfig loads the file at path and builds what serve would build from
// it: everything `moat check` validates.
func checkConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	// Build everything serve builds (WAF, exclusions, SSO providers, the
	// backends' commands, …), listening on nothing.
	if err := server.Check(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return nil, err
	}
	return cfg, nil
}

// printCheck writes the warnings and the routing table of a valid config.
func printCheck(w io.Writer, cfg *config.Config) {
	for _, warning := range cfg.Warnings {
		fmt.Fprintln(w, "warning:", warning)
	}
	fmt.Fprintf(w, "%s: configuration is valid (%d routes, %d backends)\n", cfg.Path, len(cfg.Routes), len(cfg.Backends))
	if t := cfg.Tracing; t.OTLPEndpoint != "" {
		if url, err := tracing.TracesURL(t.OTLPEndpoint); err == nil {
			fmt.Fprintf(w, "tracing: %g%% of requests, spans to %s\n", t.Ratio()*100, url)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tPATH\tBACKEND\tURL\tACCESS\tPOLICY")
	for _, r := range cfg.Routes {
		prefix := r.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		policy := r.SecurityPolicy
		if policy == "" {
			policy = cfg.Server.DefaultSecurityPolicy
		}
		if policy == "" {
			policy = "-"
		}
		backend, url := r.Backend, ""
		if r.ForwardAuth {
			// The ingress in front proxies; moat answers its auth requests.
			backend, url = "forward_auth", "(the ingress's)"
		} else {
			url = strings.Join(cfg.Backends[r.Backend].Targets(), " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, prefix, backend, url, access(r), policy)
	}
	tw.Flush()
	names := make([]string, 0, len(cfg.Backends))
	for name, b := range cfg.Backends {
		if len(b.Command) > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for i, name := range names {
		if i == 0 {
			fmt.Fprintln(w, "\nmoat runs, for as long as it runs:")
		}
		b := cfg.Backends[name]
		fmt.Fprintf(w, "  %s: %s (on %s)\n", name, strings.Join(b.Command, " "), b.URL)
	}
}

func access(r *config.Route) string {
	if r.Public {
		return "public"
	}
	allow := make([]string, len(r.Allow))
	for i, m := range r.Allow {
		allow[i] = m.String()
	}
	s := "login " + strings.Join(r.Login, "+") + "; allow " + strings.Join(allow, ", ")
	if r.MFA.Required() {
		s += "; mfa required"
	}
	return s
}
