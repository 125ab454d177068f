package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	dashboard "github.com/moat-dev/moat/examples/streamlit-dashboard"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/demoapp"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/server"
)

func init() { subcommands = append(subcommands, newDemoCommand) }

func newDemoCommand() *cobra.Command {
	var addr, dataDir string
	var withStreamlit bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the built-in demo dashboard behind moat on https://localhost:8443",
		Long: "Run the seed's dashboard (four display modes over a 20×3 table, switched over a WebSocket)\n" +
			"behind moat with a self-signed certificate. Needs no other service and no network.\n" +
			"With --streamlit, run the real Streamlit version of it (examples/streamlit-dashboard,\n" +
			"built into moat) the way `moat run` runs an app; that needs Streamlit installed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if withStreamlit {
				app, err := streamlitDemo(dataDir)
				if err != nil {
					return err
				}
				return serveLocal(cmd, addr, dataDir, "moat-demo-streamlit.yaml", app)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return fmt.Errorf("start the demo dashboard: %w", err)
			}
			appServer := &http.Server{Handler: demoapp.New(), ReadHeaderTimeout: 10 * time.Second}
			go appServer.Serve(ln)
			defer appServer.Close()
			return serveLocal(cmd, addr, dataDir, "moat-demo.yaml", localApp{
				URL: "http://" + ln.Addr().String(), HealthPath: "/healthz", Title: "moat demo dashboard"})
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "localhost:8443", "HTTPS address to serve the demo on")
	cmd.Flags().StringVar(&dataDir, "data-dir", cacheDir("moat-demo"), "where the demo keeps its certificate and database")
	cmd.Flags().BoolVar(&withStreamlit, "streamlit", false, "run the example Streamlit dashboard (needs Streamlit) instead of the built-in one")
	return cmd
}

// cacheDir is name in the user's cache directory.
func cacheDir(name string) string {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, name)
}

// localApp is the one app a local moat (demo, run) serves.
type localApp struct {
	URL        string
	HealthPath string
	Title      string
	// Command and Dir, when set, are the app moat runs (backends.app.command).
	Command []string
	Dir     string
}

// serveLocal writes a configuration for app behind sign-in on addr, with a
// self-signed certificate and SQLite in dataDir, gives its administrator a
// one-time password, and serves until a signal stops it.
func serveLocal(cmd *cobra.Command, addr, dataDir, file string, app localApp) error {
	ctx := cmd.Context()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	var command string
	if len(app.Command) > 0 {
		argv, _ := json.Marshal(app.Command)
		command = fmt.Sprintf("    command: %s\n    command_dir: %q\n", argv, app.Dir)
	}
	var health string
	if app.HealthPath != "" {
		health = fmt.Sprintf("    health_path: %q\n", app.HealthPath)
	}
	yaml := fmt.Sprintf(`# Written by "moat %s"; edit it and moat reloads it.
server:
  https_addr: %q
  http_addr: "off"
  internal_addr: "127.0.0.1:0"
data_dir: %q
tls: {self_signed: true}
backends:
  app:
    url: %q
%s%sroutes:
  - host: %q
    backend: app
    title: %q
    login: [password]
    allow: ["group:%s"]
`, cmd.Name(), addr, dataDir, app.URL, health, command, host, app.Title, demoGroup)
	path := filepath.Join(dataDir, file)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		return fmt.Errorf("write the configuration: %w", err)
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
	return serve(ctx, cfg, path, nil, func(a server.Addrs) {
		_, port, _ := net.SplitHostPort(a.HTTPS)
		fmt.Fprintf(out, "\nmoat is serving %s: open https://%s:%s/\n", app.Title, host, port)
		fmt.Fprintf(out, "(self-signed certificate: your browser will ask you to accept it)\n\n")
		fmt.Fprintf(out, "sign in as %s with the one-time password\n    %s\n", demoAdminEmail, oneTime)
		fmt.Fprintf(out, "(you choose your own password at the first sign-in; the admin console is at /_moat/admin/)\n\n")
		fmt.Fprintf(out, "config: %s · metrics: http://%s/metrics · stop with Ctrl-C\n\n", path, a.Internal)
	})
}

// streamlitDemo writes the example Streamlit dashboard into dataDir and
// returns it as an app to run with Streamlit, or says how to install
// Streamlit.
func streamlitDemo(dataDir string) (localApp, error) {
	py := pythonBin()
	if out, err := exec.Command(py, "-c", "import streamlit, jwt").CombinedOutput(); err != nil {
		return localApp{}, fmt.Errorf("moat demo --streamlit needs Streamlit and PyJWT for %s (%v: %s): pip install -r examples/streamlit-dashboard/requirements.txt, or run moat demo without --streamlit for the built-in dashboard",
			py, err, bytes.TrimSpace(out))
	}
	dir := filepath.Join(dataDir, "streamlit-dashboard")
	err := fs.WalkDir(dashboard.Files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := dashboard.Files.ReadFile(name)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name), b, 0o600)
	})
	if err != nil {
		return localApp{}, fmt.Errorf("write the example dashboard: %w", err)
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return localApp{}, err
	}
	return localApp{URL: "http://127.0.0.1:" + strconv.Itoa(port), Title: "Streamlit dashboard",
		Command: []string{py, "-m", "streamlit", "run", "app.py"}, Dir: dir}, nil
}

// pythonBin is the Python that runs Streamlit: MOAT_PYTHON, else python3.
func pythonBin() string {
	if p := os.Getenv("MOAT_PYTHON"); p != "" {
		return p
	}
	return "python3"
}

// freeLoopbackPort returns a port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for the app: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// The demo's administrator, allowed on the dashboard and in the console.
const (
	demoAdminEmail = "admin@moat.test"
	demoGroup      = "demo"
)

// demoAdmin creates the demo's administrator, or gives the existing one a
// fresh one-time password (each run prints one), and returns that password.
// It goes through the directory like every other change to a user, so the
// administrator gets the console's rules and its audit events. It runs
// before the demo serves, so no instance needs telling.
func demoAdmin(ctx context.Context, cfgPath string) (string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	st, cfg, err := openStore(ctx, cfgPath)
	if err != nil {
		return "", err
	}
	defer st.Close()
	dir := &directory.Directory{Store: st, AdminGroup: cfg.Identity.AdminGroup,
		Passwords: directory.Passwords{Limiter: password.NewLimiter(1, 0), Policy: password.Policy{MinLength: cfg.Identity.Passwords.MinLength}},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil))}
	groups := []string{cfg.Identity.AdminGroup, demoGroup}
	u, err := dir.UserByEmail(ctx, demoAdminEmail)
	switch {
	case errors.Is(err, directory.ErrNotFound):
		_, out, err := dir.CreateUser(ctx, cli, directory.NewUser{Email: demoAdminEmail, Name: "Demo administrator", Groups: groups, Mode: directory.ModePassword})
		if err != nil {
			return "", fmt.Errorf("create the demo administrator: %w", err)
		}
		return out.Password, nil
	case err != nil:
		return "", err
	}
	if u.Disabled {
		if _, _, err := dir.SetDisabled(ctx, cli, u.ID, false); err != nil {
			return "", fmt.Errorf("enable the demo administrator: %w", err)
		}
	}
	if !slices.Equal(u.Groups, groups) {
		if _, err := dir.UpdateUser(ctx, cli, u.ID, nil, groups, true); err != nil {
			return "", fmt.Errorf("reset the demo administrator's groups: %w", err)
		}
	}
	_, out, _, err := dir.ResetPassword(ctx, cli, u.ID, directory.ModePassword, "")
	if err != nil {
		return "", fmt.Errorf("reset the demo administrator's password: %w", err)
	}
	return out.Password, nil
}
