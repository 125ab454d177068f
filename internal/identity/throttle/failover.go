package throttle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/attempts"
)

// failover is the counter of a Service on Redis: it applies counters_fail
// while Redis does not answer. "open" counts in this instance's memory
// (budgets per instance, as if each instance were alone, until Redis
// answers again); "closed" returns Redis's error, so every sign-in is
// answered 503. One log line marks each change. An admin's Unlock never
// falls back: it must reach the counts every instance reads.
type failover struct {
	primary attempts.Counter
	local   *attempts.Memory // nil when closed
	mode    string
	log     *slog.Logger
	down    atomic.Bool
}

// use reports whether to count in memory after the primary answered err.
// A request that ended meanwhile says nothing about Redis.
func (f *failover) use(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if err == nil {
		if f.down.Swap(false) {
			f.log.Info("sign-in throttle: Redis answers again; failed sign-ins count for every instance again", "counters_fail", f.mode)
		}
		return false
	}
	if !errors.Is(err, attempts.ErrUnavailable) {
		return false
	}
	if !f.down.Swap(true) {
		if f.local != nil {
			f.log.Warn("sign-in throttle: Redis unreachable; counting failed sign-ins in this instance's memory until it answers, so each instance has budgets of its own meanwhile", "counters_fail", f.mode, "err", err)
		} else {
			f.log.Error("sign-in throttle: Redis unreachable; sign-ins are answered 503 until it answers", "counters_fail", f.mode, "err", err)
		}
	}
	return f.local != nil
}

func (f *failover) Fail(ctx context.Context, key string, window time.Duration) (attempts.State, error) {
	st, err := f.primary.Fail(ctx, key, window)
	if f.use(ctx, err) {
		return f.local.Fail(ctx, key, window)
	}
	return st, err
}

func (f *failover) Get(ctx context.Context, key string) (attempts.State, error) {
	st, err := f.primary.Get(ctx, key)
	if f.use(ctx, err) {
		return f.local.Get(ctx, key)
	}
	return st, err
}

func (f *failover) Reset(ctx context.Context, key string) error {
	err := f.primary.Reset(ctx, key)
	if f.use(ctx, err) {
		return f.local.Reset(ctx, key)
	}
	return err
}

func (f *failover) Lock(ctx context.Context, key string, d time.Duration) error {
	err := f.primary.Lock(ctx, key, d)
	if f.use(ctx, err) {
		return f.local.Lock(ctx, key, d)
	}
	return err
}

func (f *failover) Unlock(ctx context.Context, key string) error {
	if f.local != nil {
		_ = f.local.Unlock(ctx, key)
	}
	err := f.primary.Unlock(ctx, key)
	f.use(ctx, err)
	return err
}

func (f *failover) Sweep(ctx context.Context) error {
	if f.local != nil {
		_ = f.local.Sweep(ctx)
	}
	return f.primary.Sweep(ctx)
}

func (f *failover) Close() error {
	if c, ok := f.primary.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
