package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/logging"
	"github.com/moat-dev/moat/internal/server"
)

func init() { subcommands = append(subcommands, newServeCommand) }

func newServeCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run moat with a configuration file",
		Long: "Run moat: HTTPS on server.https_addr, redirects and ACME challenges on server.http_addr,\n" +
			"metrics and health on server.internal_addr. SIGHUP or a change to the file reloads it;\n" +
			"SIGTERM drains in-flight requests and closes WebSockets.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, path, nil, nil)
		},
	}
	configFlag(cmd, &path)
	return cmd
}

// serve runs a server for cfg until a signal stops it, with apps to run
// for backends besides the configuration's commands (moat run).
func serve(ctx context.Context, cfg *config.Config, path string, apps map[string]server.AppCommand, ready func(server.Addrs)) error {
	log := logging.New(os.Stderr, cfg.Server.LogFormat, cfg.Server.LogLevel)
	slog.SetDefault(log)
	for _, w := range cfg.Warnings {
		log.Warn("configuration warning", "warning", w)
	}
	srv, err := server.New(cfg, path, log)
	if err != nil {
		return err
	}
	srv.Ready = ready
	srv.AppCommands = apps
	if ctx == nil {
		ctx = context.Background()
	}
	return srv.Run(ctx)
}
