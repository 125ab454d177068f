// Package redisconn opens the Redis clients that moat's shared counters
// (rate limits, sign-in failures) and its fan-out of changes use: bounded
// timeouts so that no request waits long on a slow or unreachable server,
// an error that never repeats the URL (it may hold a password), and a
// backoff so that an outage costs one timeout per instance per second
// rather than one per request.
package redisconn

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrBadURL is returned for a URL go-redis cannot parse; it says nothing
// of the URL itself.
var ErrBadURL = errors.New("not a valid redis URL")

// Options are how a client talks to Redis.
type Options struct {
	// Dial bounds a connection attempt; IO bounds each read and write and
	// the wait for a free pooled connection.
	Dial, IO time.Duration
	// DialOnce makes a refused connection an answer: go-redis would
	// otherwise dial five times, 100 ms apart, before it gives up.
	DialOnce bool
}

// Counters are the options for counters a request waits on: a request
// waits at most about Dial+IO for a shared count before the counters'
// failure mode (counters_fail) applies.
var Counters = Options{Dial: 500 * time.Millisecond, IO: 250 * time.Millisecond}

// NewClient returns a client for the server rawURL names (redis://,
// rediss:// or unix://) with o's timeouts, one retry of a failed command
// and no CLIENT SETINFO. It does not dial: an unreachable server shows in
// the first call. Its only error is ErrBadURL.
func (o Options) NewClient(rawURL string) (*redis.Client, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, ErrBadURL // never echo: the URL may hold a password
	}
	opt.DialTimeout = o.Dial
	opt.ReadTimeout = o.IO
	opt.WriteTimeout = o.IO
	opt.PoolTimeout = o.IO
	opt.MaxRetries = 1
	if o.DialOnce {
		opt.DialerRetries = 1
	}
	opt.DisableIdentity = true
	return redis.NewClient(opt), nil
}

// backoff is how long Redis is left alone after a failure.
const backoff = time.Second

// Backoff remembers a failed call so that Redis is not asked again for a
// second: an outage then costs one timeout per instance per second, not
// one per request. The zero value has seen no failure.
type Backoff struct {
	until atomic.Int64 // unix nanoseconds; no calls before then
}

// Down reports whether a recent failure says not to call Redis now.
func (b *Backoff) Down() bool {
	until := b.until.Load()
	return until != 0 && time.Now().UnixNano() < until
}

// Record notes how a call made with ctx ended. A failure starts the
// backoff, unless ctx had ended (the caller gave up, not Redis); a success
// ends it.
func (b *Backoff) Record(ctx context.Context, err error) {
	switch {
	case err == nil:
		b.until.Store(0)
	case ctx.Err() == nil:
		b.until.Store(time.Now().Add(backoff).UnixNano())
	}
}
