package fanout_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/moat-dev/moat/internal/fanout"
	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testproc"
)

// The helper process is this test binary run again with helperEnv set to
// "postgres DSN" or "redis URL": an instance that subscribes to the bus,
// says "ready", and prints every event it receives as "UNIXNANO KIND [ID]"
// until its stdin closes.
const helperEnv = "MOAT_FANOUT_HELPER"

func helper(spec string) int {
	kind, target, _ := strings.Cut(spec, " ")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	b, err := openBus(ctx, kind, target)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	defer b.Close()
	sub := b.Subscribe()
	fmt.Println("ready")
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		b.Close()
	}()
	w := bufio.NewWriter(os.Stdout)
	for e := range sub.C {
		fmt.Fprintln(w, time.Now().UnixNano(), e.Kind, e.ID)
		w.Flush()
	}
	return 0
}

func openBus(ctx context.Context, kind, target string) (*fanout.Bus, error) {
	if kind == "postgres" {
		return fanout.NewPostgres(ctx, target, nil)
	}
	return fanout.NewRedis(ctx, target, nil)
}

// received is one event as a helper saw it.
type received struct {
	at time.Time
	e  fanout.Event
}

// instance is a helper process and what it has received so far.
type instance struct {
	name string

	mu   sync.Mutex
	got  []received
	news chan struct{} // signalled on each event
}

func startInstance(t *testing.T, name, spec string) *instance {
	t.Helper()
	h := testproc.Start(t, helperEnv+"="+spec)
	in := &instance{name: name, news: make(chan struct{}, 1)}
	if line := h.Line(t); line != "ready" {
		t.Fatalf("%s did not start: %q", name, line)
	}
	go func() {
		for {
			line, ok := h.Next()
			if !ok {
				return
			}
			f := strings.Fields(line)
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			r := received{at: time.Unix(0, ns), e: fanout.Event{Kind: fanout.Kind(f[1])}}
			if len(f) > 2 {
				r.e.ID = f[2]
			}
			in.mu.Lock()
			in.got = append(in.got, r)
			in.mu.Unlock()
			select {
			case in.news <- struct{}{}:
			default:
			}
		}
	}()
	return in
}

// await waits until the instance has received an event that ok accepts,
// and returns it.
func (in *instance) await(t *testing.T, limit time.Duration, ok func(fanout.Event) bool) received {
	t.Helper()
	deadline := time.After(limit)
	for {
		in.mu.Lock()
		for _, r := range in.got {
			if ok(r.e) {
				in.mu.Unlock()
				return r
			}
		}
		in.mu.Unlock()
		select {
		case <-in.news:
		case <-deadline:
			t.Fatalf("%s received no such event within %v", in.name, limit)
		}
	}
}

func (in *instance) events() []received {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.got)
}

// backend is a real server the bus runs over, which a test can kill and
// start again.
type backend struct {
	name        string
	target      string
	kill, start func(t testing.TB)
	// inject sends payload on the channel as anyone could; an error
	// means the server itself refused it.
	inject func(t *testing.T, payload string) error
}

func backends(t *testing.T) []backend {
	pg := storetest.NewServer(t)
	rd := redistest.NewServer(t)
	return []backend{
		{
			name: "postgres", target: pg.DSN(),
			kill: pg.Crash, start: pg.Start,
			inject: func(t *testing.T, payload string) error {
				conn, err := pgx.Connect(t.Context(), pg.DSN())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
				_, err = conn.Exec(t.Context(), "SELECT pg_notify('moat_events', $1)", payload)
				return err
			},
		},
		{
			name: "redis", target: rd.URL(),
			kill: rd.Stop, start: rd.Start,
			inject: func(t *testing.T, payload string) error {
				opt, _ := redis.ParseURL(rd.URL())
				c := redis.NewClient(opt)
				defer c.Close()
				return c.Publish(t.Context(), "moat:events:0", payload).Err()
			},
		},
	}
}

// TestDeliveryAcrossProcesses: this process publishes, two other processes
// (instances) receive every event, in order; the test reports the delivery
// latency from Publish to the other process's channel.
func TestDeliveryAcrossProcesses(t *testing.T) {
	const events = 300
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			instances := []*instance{startInstance(t, "instance 2", be.name+" "+be.target), startInstance(t, "instance 3", be.name+" "+be.target)}
			pub, err := openBus(t.Context(), be.name, be.target)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			sent := make([]time.Time, events)
			for i := range events {
				sent[i] = time.Now()
				if err := pub.Publish(t.Context(), fanout.Event{Kind: fanout.SessionRevoked, ID: strconv.Itoa(i)}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Millisecond) // a steady trickle, not a burst: this measures latency
			}
			last := strconv.Itoa(events - 1)
			var latencies []time.Duration
			for _, in := range instances {
				in.await(t, 10*time.Second, func(e fanout.Event) bool { return e.ID == last })
				got := in.events()
				var ids []string
				for _, r := range got {
					if r.e.Kind != fanout.SessionRevoked {
						t.Errorf("%s received %v", in.name, r.e)
						continue
					}
					ids = append(ids, r.e.ID)
					i, _ := strconv.Atoi(r.e.ID)
					latencies = append(latencies, r.at.Sub(sent[i]))
				}
				if len(ids) != events {
					t.Errorf("%s received %d events, want %d", in.name, len(ids), events)
				}
				if !slices.IsSortedFunc(ids, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y }) {
					t.Errorf("%s received events out of order", in.name)
				}
			}
			slices.Sort(latencies)
			t.Logf("%s: %d deliveries to 2 other processes: p50 %v, p99 %v, max %v", be.name, len(latencies),
				percentile(latencies, 50), percentile(latencies, 99), latencies[len(latencies)-1])
		})
	}
}

// TestDeliveryAfterTheServerRestarts kills PostgreSQL (an immediate
// shutdown) and Redis (SIGKILL) under two subscribed instances and starts
// them again, at once and after an outage long enough for the reconnection
// backoff to reach its cap: publishing fails while the server is down,
// every instance gets a Resync once it listens again, and events flow
// again. The test reports how long both took after the server started.
func TestDeliveryAfterTheServerRestarts(t *testing.T) {
	for _, be := range backends(t) {
		for _, outage := range []time.Duration{0, 4 * time.Second} {
			t.Run(fmt.Sprintf("%s down for %v", be.name, outage), func(t *testing.T) {
				testRestart(t, be, outage)
			})
		}
	}
}

func testRestart(t *testing.T, be backend, outage time.Duration) {
	instances := []*instance{startInstance(t, "instance 2", be.name+" "+be.target), startInstance(t, "instance 3", be.name+" "+be.target)}
	pub, err := openBus(t.Context(), be.name, be.target)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	before := fanout.Event{Kind: fanout.UserChanged, ID: "before"}
	if err := pub.Publish(t.Context(), before); err != nil {
		t.Fatal(err)
	}
	for _, in := range instances {
		in.await(t, 10*time.Second, func(e fanout.Event) bool { return e == before })
	}

	be.kill(t)
	down := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	if err := pub.Publish(ctx, fanout.Event{Kind: fanout.UserChanged, ID: "lost"}); err == nil {
		t.Error("publishing while the server is down reported success")
	}
	cancel()
	time.Sleep(time.Until(down.Add(outage))) // the outage itself, not a wait for a condition
	restart := time.Now()
	be.start(t)
	t.Logf("%s: the server accepted connections again %v after it was started", be.name, time.Since(restart).Round(time.Millisecond))
	for _, in := range instances {
		r := in.await(t, 30*time.Second, func(e fanout.Event) bool { return e.Kind == fanout.Resync })
		t.Logf("%s: %s resynced %v after the server was started", be.name, in.name, r.at.Sub(restart).Round(time.Millisecond))
		if r.at.Before(down) {
			t.Errorf("%s resynced before the outage", in.name)
		}
	}
	// The publisher's own connections were cut too: its first
	// publish may fail, as a caller would see; it then works.
	after := fanout.Event{Kind: fanout.UserChanged, ID: "after"}
	deadline := time.Now().Add(30 * time.Second)
	for pub.Publish(t.Context(), after) != nil {
		if time.Now().After(deadline) {
			t.Fatal("publishing never worked again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, in := range instances {
		r := in.await(t, 10*time.Second, func(e fanout.Event) bool { return e == after })
		t.Logf("%s: %s received a new event %v after the server was started", be.name, in.name, r.at.Sub(restart).Round(time.Millisecond))
	}
}

// TestMalformedMessagesAreDropped: anyone who can NOTIFY or PUBLISH on the
// channel can send anything; a message that is not an event reaches no
// subscriber, and the events after it still do.
func TestMalformedMessagesAreDropped(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			in := startInstance(t, "instance 2", be.name+" "+be.target)
			for _, payload := range []string{
				"", "noseparator", "resync ", "session.revoked has space", "user.changed " + strings.Repeat("x", 5000),
				"USER.CHANGED x", "user.changed \x00", "user.changed é", "{\"kind\":\"user.changed\"}",
			} {
				if err := be.inject(t, payload); err != nil {
					t.Logf("%q: the server refused it: %v", payload, err)
				}
			}
			if err := be.inject(t, "user.changed last"); err != nil {
				t.Fatal(err)
			}
			in.await(t, 10*time.Second, func(e fanout.Event) bool { return e.ID == "last" })
			if got := in.events(); len(got) != 1 {
				t.Errorf("received %v, want only the one event", got)
			}
		})
	}
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// TestAPublisherReachesEveryInstance: a process that only publishes (a CLI
// command, fanout.OpenPublisher) reaches the instances listening on the
// same PostgreSQL or Redis.
func TestAPublisherReachesEveryInstance(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			in := startInstance(t, "instance 2", be.name+" "+be.target)
			store, counters := "", be.target
			if be.name == "postgres" {
				store, counters = be.target, ""
			}
			pub, err := fanout.OpenPublisher(store, counters, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			e := fanout.Event{Kind: fanout.UserChanged, ID: "from-the-cli"}
			if err := pub.Publish(t.Context(), e); err != nil {
				t.Fatal(err)
			}
			in.await(t, 10*time.Second, func(got fanout.Event) bool { return got == e })
		})
	}
	if _, err := fanout.OpenPublisher("postgres://%zz", "", nil); err == nil || strings.Contains(err.Error(), "%zz") {
		t.Errorf("a malformed DSN: %v", err)
	}
}
