// Package fanout tells every moat instance, within a second, that something
// it may hold in a cache has changed: a session was revoked, a user was
// changed, a token was revoked, the signing keys were rotated.
//
// An Event is a kind and an id, never a secret nor the new state: a
// subscriber drops what it cached under the id and reads the store again,
// so an event forged or replayed by someone who can reach the transport
// costs a cache miss and nothing more.
//
// Three transports carry events: PostgreSQL's LISTEN/NOTIFY when the store
// is PostgreSQL, Redis pub/sub when only counters: is Redis, and delivery
// inside the process for a single instance on SQLite. Every instance
// receives every event, its own included. Delivery is best effort: an
// event published while the transport is down is lost, so the callers keep
// polling the store as before (slower), and a subscriber receives a Resync
// event whenever events may have been missed — after the bus reconnects
// from a gap, or when the subscriber fell behind — and then drops its
// caches.
//
// Publish after the change has committed (see store.Store.InTx): an event
// must never announce a change that is then rolled back, and one lost to a
// crash between commit and publish is caught by the poll.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind says what changed.
type Kind string

// The kinds moat publishes, and Resync, which only the bus sends.
const (
	// SessionRevoked: ID is the session's id hash (store.Session.IDHash).
	SessionRevoked Kind = "session.revoked"
	// UserChanged: ID is the user's id. Disabled, deleted, groups or
	// password changed, sessions revoked: anything that changes who may
	// pass.
	UserChanged Kind = "user.changed"
	// TokenRevoked: ID is the token's hash (store.Token.Hash), what the
	// token cache knows it by; like a session's id hash, it opens
	// nothing.
	TokenRevoked Kind = "token.revoked"
	// KeysChanged: the signing keys changed (a key added, retired or
	// deleted); ID is empty.
	KeysChanged Kind = "keys.changed"
	// Resync is never published: the bus delivers it when events may have
	// been missed. The subscriber drops every cache the events keep fresh
	// (or re-reads what it holds) and polls the store.
	Resync Kind = "resync"
)

// Bounds of an event: a kind is lower-case letters, digits, dots and
// underscores; an id is an id or a hash in hex or base64, nothing else.
const (
	MaxKindBytes = 64
	MaxIDBytes   = 256
)

// Event is one change, as every instance receives it.
type Event struct {
	Kind Kind
	ID   string
}

// String is the event as a log shows it.
func (e Event) String() string { return string(e.Kind) + " " + e.ID }

// Validate reports why e cannot be published, or nil.
func (e Event) Validate() error {
	if e.Kind == "" || len(e.Kind) > MaxKindBytes {
		return fmt.Errorf("event kind %.64q: must be 1 to %d bytes", e.Kind, MaxKindBytes)
	}
	if e.Kind == Resync {
		return errors.New("event kind resync: only the bus sends it")
	}
	for _, c := range []byte(e.Kind) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_') {
			return fmt.Errorf("event kind %.64q: only a-z, 0-9, dots and underscores", e.Kind)
		}
	}
	if len(e.ID) > MaxIDBytes {
		return fmt.Errorf("event %s: id of %d bytes, more than %d", e.Kind, len(e.ID), MaxIDBytes)
	}
	for _, c := range []byte(e.ID) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:=+/@", c) >= 0) {
			return fmt.Errorf("event %s: the id holds a character an id never does", e.Kind)
		}
	}
	return nil
}

// encode is the event on the wire: "kind id".
func (e Event) encode() string { return string(e.Kind) + " " + e.ID }

// decode parses what encode wrote, refusing anything else.
func decode(payload string) (Event, error) {
	if len(payload) > MaxKindBytes+1+MaxIDBytes {
		return Event{}, errors.New("too long")
	}
	kind, id, ok := strings.Cut(payload, " ")
	if !ok {
		return Event{}, errors.New("no separator")
	}
	e := Event{Kind: Kind(kind), ID: id}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// subscriberBuffer is how many events a subscriber may fall behind before
// it is sent a Resync instead.
const subscriberBuffer = 1024

// Subscription receives the bus's events on C until Close. A subscriber
// that falls subscriberBuffer events behind loses what is queued and
// finds a Resync instead.
type Subscription struct {
	// C carries the events; it is closed when the subscription or the bus
	// is closed.
	C <-chan Event

	c   chan Event
	bus *Bus
}

// Close ends the subscription and closes C.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if _, ok := s.bus.subs[s]; ok {
		delete(s.bus.subs, s)
		close(s.c)
	}
}

// transport carries encoded events between instances.
type transport interface {
	// publish sends one encoded event to every instance.
	publish(ctx context.Context, payload string) error
	// close stops the transport's goroutines and waits for them.
	close() error
}

// Bus publishes events to every instance and delivers every instance's
// events to this one's subscribers. Its methods are safe for concurrent
// use.
type Bus struct {
	t      transport // nil: this process only
	logger *slog.Logger

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool

	// dropped counts malformed messages from the transport; lastDropLog
	// (unix nanoseconds) keeps their log line to one a minute.
	dropped     atomic.Int64
	lastDropLog atomic.Int64
}

func newBus(logger *slog.Logger) *Bus {
	if logger == nil {
		logger = slog.Default()
	}
	return &Bus{logger: logger.With("component", "fanout"), subs: map[*Subscription]struct{}{}}
}

// NewLocal returns a bus that delivers to this process's subscribers only:
// the one instance on SQLite. (A change made by another process on the same
// file, such as the CLI, reaches it by the callers' poll.)
func NewLocal(logger *slog.Logger) *Bus { return newBus(logger) }

// Subscribe returns a new subscription to every event from now on.
func (b *Bus) Subscribe() *Subscription {
	c := make(chan Event, subscriberBuffer)
	s := &Subscription{C: c, c: c, bus: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(c)
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

// Publish sends e to every instance, this one included. An error means it
// was not sent (the transport is down): the change is in the store all
// the same, and other instances learn of it by their poll.
func (b *Bus) Publish(ctx context.Context, e Event) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if b.t == nil {
		b.deliver(e)
		return nil
	}
	if err := b.t.publish(ctx, e.encode()); err != nil {
		return fmt.Errorf("publish %s: %w", e.Kind, err)
	}
	return nil
}

// Close stops the transport and closes every subscription.
func (b *Bus) Close() error {
	var err error
	if b.t != nil {
		err = b.t.close()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		close(s.c)
		delete(b.subs, s)
	}
	return err
}

// deliver hands e to every subscriber without waiting: one that is full
// has its queue replaced by a Resync, which tells it more than what it
// missed.
func (b *Bus) deliver(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.c <- e:
			continue
		default:
		}
		for len(s.c) > 0 {
			select {
			case <-s.c:
			default:
			}
		}
		s.c <- Event{Kind: Resync} // room: only deliver sends, under b.mu
	}
}

// receive is what a transport calls with each message it receives.
func (b *Bus) receive(payload string) {
	e, err := decode(payload)
	if err != nil {
		n := b.dropped.Add(1)
		now := time.Now().UnixNano()
		if last := b.lastDropLog.Load(); now-last > int64(time.Minute) && b.lastDropLog.CompareAndSwap(last, now) {
			// Never the payload: it is anyone's who can reach the
			// transport.
			b.logger.Warn("fanout: dropped a malformed message", "error", err, "bytes", len(payload), "dropped_total", n)
		}
		return
	}
	b.deliver(e)
}

// resync tells every subscriber that events may have been missed.
func (b *Bus) resync() { b.deliver(Event{Kind: Resync}) }

// Open returns the bus for moat's configuration: PostgreSQL's
// LISTEN/NOTIFY when store is a postgres:// DSN, else Redis pub/sub when
// counters is a Redis URL, else this process alone. An unreachable server
// is not an error (the bus connects when it can and sends a Resync then);
// a malformed DSN or URL is.
func Open(ctx context.Context, store, counters string, logger *slog.Logger) (*Bus, error) {
	switch {
	case strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://"):
		return NewPostgres(ctx, store, logger)
	case counters != "":
		return NewRedis(ctx, counters, logger)
	}
	return NewLocal(logger), nil
}

// OpenPublisher is Open for a process that only publishes, such as a
// command of the CLI: it listens to nothing (its subscribers never hear
// another instance) and connects at its first Publish. A malformed DSN or
// URL is an error; on SQLite without Redis there is no one to tell, and
// Publish reaches only this process.
func OpenPublisher(store, counters string, logger *slog.Logger) (*Bus, error) {
	switch {
	case strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://"):
		pool, err := pgPool(context.Background(), store)
		if err != nil {
			return nil, err
		}
		b := newBus(logger)
		b.t = &pgPublisher{pool: pool}
		return b, nil
	case counters != "":
		client, err := redisClient(counters)
		if err != nil {
			return nil, err
		}
		b := newBus(logger)
		b.t = &redisPublisher{client: client, channel: redisChannel(client)}
		return b, nil
	}
	return NewLocal(logger), nil
}

// backoff is the wait between reconnection attempts: from 100 ms, doubling
// up to 2 s (so the bus is back at most about 2 s after its server, and a
// connection attempt every 2 s per instance costs nothing), with jitter so
// instances do not all knock at once.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = 100 * time.Millisecond
	} else {
		b.d = min(2*b.d, 2*time.Second)
	}
	return b.d/2 + rand.N(b.d/2)
}

func (b *backoff) reset() { b.d = 0 }

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
