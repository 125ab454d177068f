package fanout_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/fanout"
	"github.com/moat-dev/moat/internal/store/storetest"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helper(spec))
	}
	storetest.Main(m)
}

func TestLocalDeliversToEverySubscriber(t *testing.T) {
	b := fanout.NewLocal(nil)
	defer b.Close()
	a, c := b.Subscribe(), b.Subscribe()
	e := fanout.Event{Kind: fanout.SessionRevoked, ID: "9f86d081884c7d65"}
	if err := b.Publish(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*fanout.Subscription{a, c} {
		if got := next(t, s); got != e {
			t.Errorf("got %v, want %v", got, e)
		}
	}
	c.Close()
	if _, ok := <-c.C; ok {
		t.Error("a closed subscription still delivers")
	}
	if err := b.Publish(t.Context(), fanout.Event{Kind: fanout.KeysChanged}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, a); got.Kind != fanout.KeysChanged || got.ID != "" {
		t.Errorf("got %v", got)
	}
	b.Close()
	if _, ok := <-a.C; ok {
		t.Error("closing the bus left a subscription open")
	}
}

// TestASubscriberThatFallsBehindGetsResync: a subscriber that does not keep
// up loses what was queued and is told to resync, while the publisher
// never waits for it.
func TestASubscriberThatFallsBehindGetsResync(t *testing.T) {
	b := fanout.NewLocal(nil)
	defer b.Close()
	slow := b.Subscribe()
	// Nobody reads slow: Publish must not wait for it.
	for i := range 5000 {
		if err := b.Publish(t.Context(), fanout.Event{Kind: fanout.UserChanged, ID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := next(t, slow)
	if got.Kind != fanout.Resync {
		t.Fatalf("the slow subscriber's first event is %v, want a resync", got)
	}
	// What follows the resync is delivered in order.
	for len(slow.C) > 0 {
		<-slow.C
	}
	if err := b.Publish(t.Context(), fanout.Event{Kind: fanout.UserChanged, ID: "after"}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, slow); got.ID != "after" {
		t.Errorf("after catching up: %v", got)
	}
}

func TestEventsAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    fanout.Event
		ok   bool
	}{
		{"a session hash", fanout.Event{Kind: fanout.SessionRevoked, ID: strings.Repeat("ab", 32)}, true},
		{"a base64 key id", fanout.Event{Kind: fanout.KeysChanged, ID: "Ab-_x=/+"}, true},
		{"no id", fanout.Event{Kind: fanout.KeysChanged}, true},
		{"a kind of moat's future", fanout.Event{Kind: "group.changed", ID: "customer_a"}, true},
		{"no kind", fanout.Event{ID: "x"}, false},
		{"resync, which only the bus sends", fanout.Event{Kind: fanout.Resync}, false},
		{"an upper-case kind", fanout.Event{Kind: "User.Changed", ID: "x"}, false},
		{"a space in the id", fanout.Event{Kind: fanout.UserChanged, ID: "a b"}, false},
		{"a newline in the id", fanout.Event{Kind: fanout.UserChanged, ID: "a\nb"}, false},
		{"a secret-sized id", fanout.Event{Kind: fanout.UserChanged, ID: strings.Repeat("x", fanout.MaxIDBytes+1)}, false},
		{"a long kind", fanout.Event{Kind: fanout.Kind(strings.Repeat("k", fanout.MaxKindBytes+1))}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.e.Validate()
			if (err == nil) != tc.ok {
				t.Errorf("Validate = %v, want ok %v", err, tc.ok)
			}
			b := fanout.NewLocal(nil)
			defer b.Close()
			if err := b.Publish(t.Context(), tc.e); (err == nil) != tc.ok {
				t.Errorf("Publish = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestOpenPicksTheTransport(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	for _, tc := range []struct{ store, counters string }{
		{"postgres://moat@127.0.0.1:1/moat?connect_timeout=1", ""},
		{"/var/lib/moat/moat.db", "redis://127.0.0.1:1/0"},
		{"/var/lib/moat/moat.db", ""},
	} {
		b, err := fanout.Open(ctx, tc.store, tc.counters, nil)
		if err != nil {
			t.Errorf("%q %q: an unreachable server is not an error at start: %v", tc.store, tc.counters, err)
			continue
		}
		b.Close()
	}
	if _, err := fanout.Open(ctx, "postgres://u:secret@h:notaport/x", "", nil); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("a malformed DSN: %v", err)
	}
	if _, err := fanout.Open(ctx, "", "redis://u:secret@h:notaport/x", nil); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("a malformed URL: %v", err)
	}
}

// next returns the subscription's next event, failing the test after 10s.
func next(t *testing.T, s *fanout.Subscription) fanout.Event {
	t.Helper()
	select {
	case e, ok := <-s.C:
		if !ok {
			t.Fatal("the subscription was closed")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return fanout.Event{}
}
