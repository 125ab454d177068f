package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/proxy"
	"github.com/moat-dev/moat/internal/ratelimit"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/usage"
)

// Check builds everything serve builds for cfg — the client-IP resolver,
// every backend, every security policy with its WAF rule sets and
// exclusions, sign-in with its SSO providers, the console, the account page
// and every route's chain — and throws it away, so a configuration Check
// accepts is one serve accepts (issue 11: moat check skipped the WAF, its
// exclusions and the OIDC providers). It listens on nothing and touches
// neither data_dir, nor the store, nor the counters: the world is built on
// a throwaway process (an empty SQLite store in a temporary directory,
// in-memory counters, a random instance key).
func Check(cfg *config.Config, log *slog.Logger) error {
	_, done, err := throwawayWorld(cfg, log)
	if err != nil {
		return err
	}
	done()
	_, err = AppSpecs(cfg, nil, "")
	return err
}

// throwawayWorld builds cfg's world as serve does, on a throwaway process;
// done releases both.
func throwawayWorld(cfg *config.Config, log *slog.Logger) (wd *world, done func(), err error) {
	dir, err := os.MkdirTemp("", "moat-check-")
	if err != nil {
		return nil, nil, fmt.Errorf("check: %w", err)
	}
	p, err := throwawayProcess(dir, log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("check: %w", err)
	}
	s := &Server{log: log, process: p}
	if wd, err = s.build(cfg); err != nil {
		p.close()
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return wd, func() {
		wd.close()
		p.close()
		os.RemoveAll(dir)
	}, nil
}

// throwawayProcess is a process that shares nothing with a running moat.
func throwawayProcess(dir string, log *slog.Logger) (*process, error) {
	st, err := store.Open(context.Background(), filepath.Join(dir, "check.db"))
	if err != nil {
		return nil, err
	}
	p := &process{store: st, counter: ratelimit.NewMemory(1), sockets: proxy.NewSockets()}
	raw := make([]byte, instancekey.Size)
	_, _ = rand.Read(raw)
	key, err := instancekey.New(raw)
	if err != nil {
		p.close()
		return nil, err
	}
	if p.identity, err = auth.NewProcess(st, key, log); err != nil {
		p.close()
		return nil, err
	}
	p.useUsage(usage.New(st, config.Usage{Off: true}, log))
	return p, nil
}
