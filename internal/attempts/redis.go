package attempts

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moat-dev/moat/internal/redisconn"
)

// Each operation is one script, atomic on the Redis server, on two keys:
// KEYS[1] a hash {n: failures, last: ms of the last failure} that expires
// the window after the last failure, KEYS[2] the lock, which expires when
// the lock ends. Times are the Redis server's, so instances' clocks do not
// matter.
var (
	// failScript: ARGV[1] the window in ms. Returns {count, 0, lock ms left}.
	failScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(ARGV[1])
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'last', now)
if redis.call('PTTL', KEYS[1]) < w then redis.call('PEXPIRE', KEYS[1], w) end
local l = redis.call('PTTL', KEYS[2])
if l < 0 then l = 0 end
return {n, 0, l}
`)
	// getScript returns {count, ms since the last failure, lock ms left}.
	getScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'n', 'last')
local n = tonumber(v[1] or '0') or 0
local since = 0
if n > 0 then since = math.max(0, now - (tonumber(v[2] or '0') or now)) end
local l = redis.call('PTTL', KEYS[2])
if l < 0 then l = 0 end
return {n, since, l}
`)
	// lockScript: ARGV[1] the lock's length in ms; a longer lock stays.
	lockScript = redis.NewScript(`
local d = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[2]) < d then redis.call('SET', KEYS[2], '1', 'PX', d) end
return 1
`)
	// resetScript forgets the failures (ARGV[1] = "0") or the failures and
	// the lock (ARGV[1] = "1").
	resetScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
if ARGV[1] == '1' then redis.call('DEL', KEYS[2]) end
return 1
`)
)

// Redis is a Counter kept in Redis, shared by every moat instance that
// points at the same server.
type Redis struct {
	client  *redis.Client
	backoff redisconn.Backoff
}

// NewRedis connects to the Redis server named by a redis://, rediss:// or
// unix:// URL, with the timeouts of the rate-limit counters (a sign-in
// waits at most about that long for its budget before it is answered 503)
// and one dial per attempt: a refused connection is an answer. It does not
// wait for the server: an unreachable one shows as ErrUnavailable.
func NewRedis(rawURL string) (*Redis, error) {
	opts := redisconn.Counters
	opts.DialOnce = true
	client, err := opts.NewClient(rawURL)
	if err != nil {
		return nil, fmt.Errorf("failure counters: %w", err)
	}
	return &Redis{client: client}, nil
}

// redisKeys are the hash and the lock of key.
func redisKeys(key string) []string {
	k := "moat:fail:{" + storedKey(key) + "}"
	return []string{k, k + ":lock"}
}

// run runs one script on key's two keys. After a failure Redis is left
// alone for a while (redisconn.Backoff).
func (r *Redis) run(ctx context.Context, s *redis.Script, key string, args ...any) (*redis.Cmd, error) {
	if r.backoff.Down() {
		return nil, fmt.Errorf("redis: %w (backing off after an error)", ErrUnavailable)
	}
	cmd := s.Run(ctx, r.client, redisKeys(key), args...)
	r.backoff.Record(ctx, cmd.Err())
	if err := cmd.Err(); err != nil {
		return nil, fmt.Errorf("redis: %w: %w", ErrUnavailable, err)
	}
	return cmd, nil
}

// state runs a script that answers {count, ms since the last, lock ms}.
func (r *Redis) state(ctx context.Context, s *redis.Script, key string, args ...any) (State, error) {
	cmd, err := r.run(ctx, s, key, args...)
	if err != nil {
		return State{}, err
	}
	v, err := cmd.Int64Slice()
	if err != nil || len(v) != 3 {
		return State{}, fmt.Errorf("redis: %w: unexpected script reply", ErrUnavailable)
	}
	return State{Count: v[0], SinceLast: time.Duration(v[1]) * time.Millisecond, Locked: time.Duration(v[2]) * time.Millisecond}, nil
}

// ms is d in whole milliseconds, at least 1.
func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// Fail implements Counter.
func (r *Redis) Fail(ctx context.Context, key string, window time.Duration) (State, error) {
	if err := checkArgs("count failure", key, window); err != nil {
		return State{}, err
	}
	return r.state(ctx, failScript, key, ms(window))
}

// Get implements Counter.
func (r *Redis) Get(ctx context.Context, key string) (State, error) {
	return r.state(ctx, getScript, key)
}

// Reset implements Counter.
func (r *Redis) Reset(ctx context.Context, key string) error {
	_, err := r.run(ctx, resetScript, key, "0")
	return err
}

// Lock implements Counter.
func (r *Redis) Lock(ctx context.Context, key string, d time.Duration) error {
	if err := checkArgs("lock", key, d); err != nil {
		return err
	}
	_, err := r.run(ctx, lockScript, key, ms(d))
	return err
}

// Unlock implements Counter.
func (r *Redis) Unlock(ctx context.Context, key string) error {
	_, err := r.run(ctx, resetScript, key, "1")
	return err
}

// Sweep implements Counter: Redis expires keys itself.
func (r *Redis) Sweep(context.Context) error { return nil }

// Close closes the connections to Redis.
func (r *Redis) Close() error { return r.client.Close() }
