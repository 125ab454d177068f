package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moat-dev/moat/internal/redisconn"
)

// hitScript counts one request in a sliding window (two fixed windows with
// a TTL of twice the interval) and sets a ban with a TTL, atomically, with
// the Redis server's clock so every instance agrees on window edges.
//
// KEYS[1] key prefix; ARGV limit, interval ms, ban count, ban interval ms,
// ban duration ms. Returns {count, banned (0|1), ban ms left}.
var hitScript = redis.NewScript(`
local p = KEYS[1]
local limit = tonumber(ARGV[1])
local iv = tonumber(ARGV[2])
local banCount = tonumber(ARGV[3])
local banIv = tonumber(ARGV[4])
local banDur = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = redis.call('PTTL', p .. ':ban')
if ttl > 0 then return {0, 1, ttl} end
local function wkeys(name, interval)
  local idx = math.floor(now / interval)
  local base = p .. ':' .. name .. ':' .. string.format('%d', interval) .. ':'
  return base .. string.format('%d', idx), base .. string.format('%d', idx - 1), idx
end
local function hit(name, interval)
  local cur, prev, idx = wkeys(name, interval)
  local c = redis.call('INCR', cur)
  if c == 1 then redis.call('PEXPIRE', cur, 2 * interval) end
  local pv = tonumber(redis.call('GET', prev) or '0')
  local elapsed = now - idx * interval
  return c + math.floor(pv * (interval - elapsed) / interval)
end
local n = hit('r', iv)
if banCount > 0 then
  local bn = n
  if banIv ~= iv then bn = hit('b', banIv) end
  if bn > banCount then
    redis.call('SET', p .. ':ban', '1', 'PX', banDur)
    -- The ban starts the key afresh: when it ends, the client gets a
    -- full allowance again.
    local c1, p1 = wkeys('r', iv)
    local c2, p2 = wkeys('b', banIv)
    redis.call('DEL', c1, p1, c2, p2)
    return {n, 1, banDur}
  end
end
return {n, 0, 0}
`)

// Redis is a Counter kept in Redis, shared by every moat instance that
// points at the same server: a ban through one is seen by all.
type Redis struct {
	client  *redis.Client
	backoff redisconn.Backoff
}

// NewRedis connects to the Redis server named by a redis://, rediss:// or
// unix:// URL, with the timeouts of redisconn.Counters. It does not wait
// for the server: an unreachable one shows as ErrUnavailable from Hit.
func NewRedis(rawURL string) (*Redis, error) {
	client, err := redisconn.Counters.NewClient(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse counters URL: %w", err)
	}
	return &Redis{client: client}, nil
}

// Hit implements Counter.
func (rc *Redis) Hit(ctx context.Context, key string, lim Limit) (Result, error) {
	if rc.backoff.Down() {
		return Result{}, fmt.Errorf("redis: %w (backing off after an error)", ErrUnavailable)
	}
	ms := func(d time.Duration) int64 { return max(1, d.Milliseconds()) }
	banIv := lim.BanInterval
	if banIv == 0 {
		banIv = lim.Interval
	}
	v, err := hitScript.Run(ctx, rc.client, []string{"moat:rl:{" + key + "}"},
		lim.Count, ms(lim.Interval), lim.BanCount, ms(banIv), ms(lim.BanDuration)).Int64Slice()
	rc.backoff.Record(ctx, err)
	if err != nil {
		return Result{}, fmt.Errorf("redis: %w: %w", ErrUnavailable, err)
	}
	if len(v) != 3 {
		return Result{}, fmt.Errorf("redis: %w: unexpected script reply", ErrUnavailable)
	}
	res := Result{Count: v[0], Exceeded: v[0] > lim.Count, Banned: v[1] == 1, BanLeft: time.Duration(v[2]) * time.Millisecond}
	if res.Banned {
		res.Exceeded = true
	}
	return res, nil
}

// Close implements Counter.
func (rc *Redis) Close() error { return rc.client.Close() }

// Ping checks that the Redis server answers, for a log line at start-up.
func (rc *Redis) Ping(ctx context.Context) error {
	if err := rc.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w: %w", ErrUnavailable, err)
	}
	return nil
}
