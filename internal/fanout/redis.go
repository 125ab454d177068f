package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moat-dev/moat/internal/redisconn"
)

// Redis settings.
const (
	// redisIdlePing is how long the subscriber waits for a message before
	// it pings: a connection that does not answer the next wait is taken
	// as lost.
	redisIdlePing = 10 * time.Second
	// redisDialTimeout and redisIOTimeout bound a connection attempt and
	// a publish.
	redisDialTimeout = time.Second
	redisIOTimeout   = time.Second
)

// redisTransport subscribes with go-redis's PubSub, which reconnects and
// subscribes again by itself; the transport notices the gap (an error
// from Receive) and sends a Resync when the subscription is confirmed
// again.
type redisTransport struct {
	client  *redis.Client
	channel string
	bus     *Bus
	logger  *slog.Logger
	cancel  context.CancelFunc
	done    chan struct{}

	// mu guards ps, the current subscription, which close closes: a
	// blocked Receive does not see ctx end until its timeout.
	mu sync.Mutex
	ps *redis.PubSub
}

// NewRedis returns a bus over Redis pub/sub on the server a redis://,
// rediss:// or unix:// URL names. It subscribes once before it returns
// (within ctx); when that fails it keeps trying in the background and
// sends a Resync once it is subscribed.
func NewRedis(ctx context.Context, rawURL string, logger *slog.Logger) (*Bus, error) {
	client, err := redisClient(rawURL)
	if err != nil {
		return nil, err
	}
	b := newBus(logger)
	runCtx, cancel := context.WithCancel(context.Background())
	t := &redisTransport{
		client:  client,
		channel: redisChannel(client),
		bus:     b,
		logger:  b.logger,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	b.t = t
	ps := t.subscribe(ctx)
	// The first confirmation tells whether the subscription is in place
	// before anyone publishes.
	subscribed := false
	if _, err := ps.ReceiveTimeout(ctx, redisDialTimeout+redisIOTimeout); err == nil {
		subscribed = true
	} else {
		t.logger.Warn("fanout: cannot subscribe on Redis yet; retrying in the background", "error", err)
	}
	go t.run(runCtx, ps, !subscribed)
	return b, nil
}

// redisClient is a client for the server rawURL names, with moat's
// timeouts.
func redisClient(rawURL string) (*redis.Client, error) {
	// DialOnce: our own backoff paces reconnection.
	client, err := redisconn.Options{Dial: redisDialTimeout, IO: redisIOTimeout, DialOnce: true}.NewClient(rawURL)
	if err != nil {
		return nil, fmt.Errorf("fanout: %w", err)
	}
	return client, nil
}

// redisChannel is the events channel of client's database: pub/sub
// channels are server-wide, not per database, so the database number
// keeps clusters on one server apart.
func redisChannel(client *redis.Client) string {
	return "moat:events:" + strconv.Itoa(client.Options().DB)
}

// redisPublisher publishes and listens to nothing (OpenPublisher).
type redisPublisher struct {
	client  *redis.Client
	channel string
}

func (t *redisPublisher) publish(ctx context.Context, payload string) error {
	return t.client.Publish(ctx, t.channel, payload).Err()
}

func (t *redisPublisher) close() error { return t.client.Close() }

// subscribe starts a new subscription, the one close closes.
func (t *redisTransport) subscribe(ctx context.Context) *redis.PubSub {
	ps := t.client.Subscribe(ctx, t.channel)
	t.mu.Lock()
	t.ps = ps
	t.mu.Unlock()
	return ps
}

// run receives until ctx ends. gap is whether events may have been missed
// since the last confirmed subscription.
func (t *redisTransport) run(ctx context.Context, ps *redis.PubSub, gap bool) {
	defer close(t.done)
	var bo backoff
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, redisIdlePing)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				// Quiet, or gone? The answer arrives as a Pong.
				pinged = true
				if ps.Ping(ctx) == nil {
					continue
				}
			}
			if !gap {
				t.logger.Warn("fanout: lost the Redis subscription; events wait for the poll until it is back", "error", err)
			}
			gap, pinged = true, false
			// A fresh PubSub: go-redis would reconnect the old one, but
			// not after a silent connection's timeout.
			_ = ps.Close()
			if !sleep(ctx, bo.next()) {
				return
			}
			ps = t.subscribe(ctx)
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && gap {
				bo.reset()
				gap = false
				t.logger.Info("fanout: subscribed on Redis again")
				t.bus.resync()
			}
		case *redis.Message:
			if m.Channel == t.channel {
				t.bus.receive(m.Payload)
			}
		}
	}
}

func (t *redisTransport) publish(ctx context.Context, payload string) error {
	return t.client.Publish(ctx, t.channel, payload).Err()
}

func (t *redisTransport) close() error {
	t.cancel()
	t.mu.Lock()
	_ = t.ps.Close()
	t.mu.Unlock()
	<-t.done
	return t.client.Close()
}
