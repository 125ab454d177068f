package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/server"
	"github.com/moat-dev/moat/internal/store"
)

func init() { subcommands = append(subcommands, newPolicyCommand) }

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with security policies",
	}
	cmd.AddCommand(newPolicyExplainCommand())
	return cmd
}

func newPolicyExplainCommand() *cobra.Command {
	var path, host, ip, reqPath, method, user string
	var headers, groups []string
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Show which route, policy and rule a request would meet, and why",
		Long: `Explain drives a request through the routing and security policies serve
builds from the configuration, without listening: the route it reaches (or
the route whose policy one of moat's own pages runs under), the security
policies that apply, and each rule in priority order with whether it matches
and why. Rate limits are not counted and the WAF is not run.

Example:
  moat policy explain -c moat.yaml --host dash-partner.example.com --ip 203.0.113.7 \
    --path /admin --header 'User-Agent: curl/8'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if host == "" || ip == "" {
				return fmt.Errorf("policy explain: --host and --ip are required")
			}
			h, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			req := server.ExplainRequest{Host: host, IP: ip, Path: reqPath, Method: strings.ToUpper(method), Headers: h}
			if user != "" {
				req.User = &request.User{Email: store.NormalizeEmail(user), Groups: groups}
			}
			out, err := server.Explain(cfg, req, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), out)
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&host, "host", "", "the request's Host")
	cmd.Flags().StringVar(&ip, "ip", "", "the client's IP address")
	cmd.Flags().StringVar(&reqPath, "path", "/", "the request path, with an optional ?query")
	cmd.Flags().StringVar(&method, "method", "GET", "the request method")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "a request header as 'Name: value' (repeatable)")
	cmd.Flags().StringVar(&user, "user", "", "the signed-in user's email, to check the route's allow list")
	cmd.Flags().StringArrayVar(&groups, "group", nil, "a group of --user (repeatable)")
	return cmd
}

// parseHeaders turns 'Name: value' flags into a header.
func parseHeaders(flags []string) (http.Header, error) {
	h := http.Header{}
	for _, f := range flags {
		name, value, ok := strings.Cut(f, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("policy explain: invalid --header %q: write 'Name: value'", f)
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(name), strings.TrimSpace(value))
	}
	return h, nil
}
