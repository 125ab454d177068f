package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/supervise"
)

// appReadyWait bounds how long Run waits for the apps it started to answer
// before it reports itself ready; an app slower than that is proxied to
// (with moat's 502 page) once it answers.
const appReadyWait = 2 * time.Minute

// AppCommand is an app to run for a backend as if the configuration said
// backends.NAME.command (`moat run` gives one on its command line); it
// holds across reloads.
type AppCommand struct {
	Argv []string
	Dir  string
}

// apps keeps the apps of backends with a command running for the life of
// the process: a reload stops and starts only those whose command changed
// (or whose backend went away).
type apps struct {
	log     *slog.Logger
	mu      sync.Mutex
	running map[string]*supervise.Process
}

// appSpecs is AppSpecs with the server's AppCommands.
func (s *Server) appSpecs(cfg *config.Config, jwksURL string) (map[string]supervise.Spec, error) {
	return AppSpecs(cfg, s.AppCommands, jwksURL)
}

// AppSpecs says what the configuration's backends run: their commands, or
// those of commands, prepared as moat runs them. jwksURL is where the apps
// fetch moat's keys ("" when not known yet). `moat check` calls it too, so
// a command that cannot run is reported before serving; the error is a
// config.Errors.
func AppSpecs(cfg *config.Config, commands map[string]AppCommand, jwksURL string) (map[string]supervise.Spec, error) {
	specs := map[string]supervise.Spec{}
	var errs config.Errors
	for _, name := range sortedNames(cfg.Backends) {
		b := cfg.Backends[name]
		argv, dir, line := b.Command, b.CommandDir, b.CommandLine
		if o, ok := commands[name]; ok {
			argv, dir, line = o.Argv, o.Dir, 0
		}
		if len(argv) == 0 {
			continue
		}
		bad := func(err error) {
			errs = append(errs, config.Problem{File: cfg.Path, Line: line, Path: "backends." + name + ".command", Msg: err.Error()})
		}
		withCommand := *b
		withCommand.Command = argv
		if err := withCommand.CheckCommand(); err != nil {
			bad(err)
			continue
		}
		u, _ := url.Parse(b.URL) // CheckCommand parsed it
		port, _ := strconv.Atoi(u.Port())
		app := supervise.App{Backend: name, Argv: argv, Dir: dir, Port: port, HealthPath: b.HealthPath,
			Issuer: assertion.Issuer(cfg), JWKSURL: jwksURL}
		for _, r := range cfg.Routes {
			if r.Backend == name {
				app.Prefixes = append(app.Prefixes, r.PathPrefix)
				app.Audiences = append(app.Audiences, r.Name())
			}
		}
		spec, err := app.Spec()
		if err != nil {
			bad(err)
			continue
		}
		specs[name] = spec
	}
	for _, name := range sortedNames(commands) {
		if cfg.Backends[name] == nil {
			errs = append(errs, config.Problem{File: cfg.Path, Path: "backends", Msg: fmt.Sprintf("moat runs an app for backend %s, which the configuration does not have: keep the backend", name)})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return specs, nil
}

// reconcile makes the running apps those of specs.
func (a *apps) reconcile(specs map[string]supervise.Spec) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running == nil {
		a.running = map[string]*supervise.Process{}
	}
	for name, p := range a.running {
		if spec, ok := specs[name]; !ok || !spec.Equal(p.Spec) {
			a.log.Info("the app's command changed; restarting it", "backend", name)
			p.Stop()
			delete(a.running, name)
		}
	}
	for _, name := range sortedNames(specs) {
		if a.running[name] == nil {
			p := &supervise.Process{Spec: specs[name], Log: a.log}
			p.Start()
			a.running[name] = p
		}
	}
}

// waitReady waits (at most appReadyWait) until every app answered once,
// or parent ends.
func (a *apps) waitReady(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, appReadyWait)
	defer cancel()
	a.mu.Lock()
	procs := make([]*supervise.Process, 0, len(a.running))
	for _, p := range a.running {
		procs = append(procs, p)
	}
	a.mu.Unlock()
	for _, p := range procs {
		if err := p.WaitReady(ctx); err != nil && parent.Err() == nil {
			a.log.Warn("serving before the app answers; moat shows its 502 page until it does", "backend", p.Spec.Name, "err", err.Error())
		}
	}
}

// signal passes sig on to every app.
func (a *apps) signal(sig syscall.Signal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, p := range a.running {
		if err := p.Signal(sig); err != nil {
			a.log.Warn("could not pass a signal on to the app", "backend", name, "signal", sig.String(), "err", err.Error())
		}
	}
}

// stopAll stops every app, all at once.
func (a *apps) stopAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range a.running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop()
		}()
	}
	wg.Wait()
	a.running = nil
}

func sortedNames[T any](m map[string]T) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
