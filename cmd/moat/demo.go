package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/demoapp"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/server"
	"github.com/moat-dev/moat/internal/store"
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
    title: "moat demo dashboard"
    login: [password]
    allow: ["group:%s"]
`, addr, dataDir, app.Addr(), host, demoGroup)
	path := filepath.Join(dataDir, "moat-demo.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		return fmt.Errorf("write demo config: %w", err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	oneTime, err := demoAdmin(ctx, path)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	return serve(ctx, cfg, path, func(a server.Addrs) {
		_, port, _ := net.SplitHostPort(a.HTTPS)
		fmt.Fprintf(out, "\nmoat demo is running: open https://%s:%s/\n", host, port)
		fmt.Fprintf(out, "(self-signed certificate: your browser will ask you to accept it)\n\n")
		fmt.Fprintf(out, "sign in as %s with the one-time password\n    %s\n", demoAdminEmail, oneTime)
		fmt.Fprintf(out, "(you choose your own password at the first sign-in; the admin console is at /_moat/admin/)\n\n")
		fmt.Fprintf(out, "config: %s · metrics: http://%s/metrics · stop with Ctrl-C\n\n", path, a.Internal)
	})
}

// The demo's administrator, allowed on the dashboard and in the console.
const (
	demoAdminEmail = "admin@moat.test"
	demoGroup      = "demo"
)

// demoAdmin creates the demo's administrator, or gives the existing one a
// fresh one-time password (each run prints one), and returns that password.
func demoAdmin(ctx context.Context, cfgPath string) (string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	st, cfg, err := openStore(ctx, cfgPath)
	if err != nil {
		return "", err
	}
	defer st.Close()
	oneTime := directory.GeneratePassword(cfg.Identity.Passwords.MinLength)
	hash, err := password.Hash(oneTime, password.DefaultParams)
	if err != nil {
		return "", err
	}
	groups := []string{cfg.Identity.AdminGroup, demoGroup}
	u, err := st.GetUserByEmail(ctx, demoAdminEmail)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u = &store.User{Email: demoAdminEmail, Name: "Demo administrator", Groups: groups, PasswordHash: hash, MustChangePassword: true}
		if err := st.CreateUser(ctx, u); err != nil {
			return "", fmt.Errorf("create the demo administrator: %w", err)
		}
	case err != nil:
		return "", err
	default:
		u.PasswordHash, u.MustChangePassword, u.Disabled, u.Groups = hash, true, false, groups
		if err := st.UpdateUser(ctx, u); err != nil {
			return "", fmt.Errorf("reset the demo administrator: %w", err)
		}
		if _, err := st.RevokeUserSessions(ctx, u.ID, time.Now()); err != nil {
			return "", err
		}
	}
	err = st.Audit(ctx, &store.AuditEvent{Time: time.Now(), Actor: cliActor, Action: "user.demo_password", Subject: u.Email})
	return oneTime, err
}
