package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/demoapp"
	"github.com/moat-dev/moat/internal/server"
)

func init() { subcommands = append(subcommands, newDemoCommand) }

func newDemoCommand() *cobra.Command {
	var addr, dataDir string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the built-in demo dashboard behind moat on https://localhost:8443",
		Long: "Run the seed's dashboard (four display modes over a 20×3 table, switched over a WebSocket)\n" +
			"behind moat with a self-signed certificate. Needs no other service and no network.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd, addr, dataDir)
		},
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cmd.Flags().StringVar(&addr, "addr", "localhost:8443", "HTTPS address to serve the demo on")
	cmd.Flags().StringVar(&dataDir, "data-dir", filepath.Join(cache, "moat-demo"), "where the demo keeps its certificate and database")
	return cmd
}

func runDemo(ctx context.Context, cmd *cobra.Command, addr, dataDir string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("start the demo dashboard: %w", err)
	}
	appServer := &http.Server{Handler: demoapp.New(), ReadHeaderTimeout: 10 * time.Second}
	go appServer.Serve(app)
	defer appServer.Close()

	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	yaml := fmt.Sprintf(`# Written by "moat demo"; edit it and moat reloads it.
server:
  https_addr: %q
  http_addr: "off"
  internal_addr: "127.0.0.1:0"
data_dir: %q
tls: {self_signed: true}
backends:
  dashboard:
    url: "http://%s"
    health_path: /healthz
routes:
  - host: %q
    backend: dashboard
    public: true
    title: "moat demo dashboard"
`, addr, dataDir, app.Addr(), host)
	path := filepath.Join(dataDir, "moat-demo.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		return fmt.Errorf("write demo config: %w", err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	return serve(ctx, cfg, path, func(a server.Addrs) {
		_, port, _ := net.SplitHostPort(a.HTTPS)
		fmt.Fprintf(out, "\nmoat demo is running: open https://%s:%s/\n", host, port)
		fmt.Fprintf(out, "(self-signed certificate: your browser will ask you to accept it)\n")
		fmt.Fprintf(out, "config: %s · metrics: http://%s/metrics · stop with Ctrl-C\n\n", path, a.Internal)
	})
}
