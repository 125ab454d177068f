package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/server"
)

func init() { subcommands = append(subcommands, newRunCommand) }

func newRunCommand() *cobra.Command {
	var cfgPath, backend, addr, dataDir string
	cmd := &cobra.Command{
		Use:   "run [-c FILE] -- COMMAND [ARG...]",
		Short: "Run an app behind moat: HTTPS, sign-in, restarts, one command",
		Long: "Start COMMAND on a free loopback port and serve it through moat until Ctrl-C, restarting it\n" +
			"when it exits (with a backoff) and stopping it with moat. The app finds its port in PORT;\n" +
			"`streamlit run` gets the flags for running behind moat (address, port, headless, base path,\n" +
			"and server.trustedUserHeaders, so st.user is the signed-in user).\n\n" +
			"Without -c, moat serves it on https://localhost:8443 with sign-in as `moat demo` does\n" +
			"(self-signed certificate, SQLite, a one-time password for admin@moat.test). With -c FILE,\n" +
			"moat serves FILE and runs COMMAND for its backend (--backend, or its only one) on the\n" +
			"port of the backend's url.",
		Example: "  moat run -- streamlit run app.py\n" +
			"  moat run -c moat.yaml --backend dashboard -- streamlit run app.py",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			if cfgPath == "" {
				if backend != "" {
					return fmt.Errorf("--backend goes with -c FILE")
				}
				return runLocal(cmd, addr, dataDir, argv, wd)
			}
			return runWithConfig(cmd, cfgPath, backend, argv, wd)
		},
	}
	// Flags end at the command: `moat run streamlit run app.py --x` needs no --.
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration to serve (default: sign-in on --addr, as moat demo)")
	cmd.Flags().StringVar(&backend, "backend", "", "with -c: the backend COMMAND serves (default: the file's only backend)")
	cmd.Flags().StringVar(&addr, "addr", "localhost:8443", "without -c: HTTPS address to serve on")
	cmd.Flags().StringVar(&dataDir, "data-dir", cacheDir("moat-run"), "without -c: where moat keeps its certificate and database")
	return cmd
}

// runLocal serves argv's app on a free loopback port behind sign-in.
func runLocal(cmd *cobra.Command, addr, dataDir string, argv []string, dir string) error {
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	app := localApp{URL: "http://127.0.0.1:" + strconv.Itoa(port), Title: strings.Join(argv, " "), Command: argv, Dir: dir}
	return serveLocal(cmd, addr, dataDir, "moat-run.yaml", app)
}

// runWithConfig serves the file at path and runs argv for one of its
// backends, on the port of that backend's url.
func runWithConfig(cmd *cobra.Command, path, backend string, argv []string, dir string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if backend == "" {
		if len(cfg.Backends) != 1 {
			names := make([]string, 0, len(cfg.Backends))
			for n := range cfg.Backends {
				names = append(names, n)
			}
			sort.Strings(names)
			return fmt.Errorf("%s has %d backends (%s): say which one the command serves with --backend", path, len(names), strings.Join(names, ", "))
		}
		for n := range cfg.Backends {
			backend = n
		}
	}
	if cfg.Backends[backend] == nil {
		return fmt.Errorf("%s has no backend %q", path, backend)
	}
	apps := map[string]server.AppCommand{backend: {Argv: argv, Dir: dir}}
	if _, err := server.AppSpecs(cfg, apps, ""); err != nil {
		return err
	}
	return serve(cmd.Context(), cfg, path, apps, nil)
}
