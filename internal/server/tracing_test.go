package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/moat-dev/moat/internal/tracing/otlptest"
)

// tracingConfig is a signed-in route under a policy hiding /secret, traced
// to the collector at COLLECTOR with sample_ratio RATIO; 127.0.0.2 (the
// ingress stand-in) is a trusted proxy.
const tracingConfig = `
server:
  https_addr: "127.0.0.1:0"
  http_addr: "127.0.0.1:0"
  internal_addr: "127.0.0.1:0"
  shutdown_grace: 5s
  trusted_proxies: ["` + ingressAddr + `"]
data_dir: %q
tls: {self_signed: true}
backends:
  app: {url: %q}
security_policies:
  guard:
    rules:
      - {priority: 100, expr: "request.path.startsWith('/secret')", action: "deny(404)"}
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}
routes:
  - {host: app.example.com, backend: app, login: [password], allow: ["group:staff"], security_policy: guard}
tracing:
  otlp_endpoint: COLLECTOR
  sample_ratio: RATIO
`

// contextApp is an app that notes the trace context of every request it
// gets (WebSocket handshakes included), by path.
type contextApp struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string]http.Header
}

func startContextApp(t *testing.T) *contextApp {
	t.Helper()
	a := &contextApp{got: map[string]http.Header{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.got[r.URL.Path] = http.Header{"Traceparent": r.Header.Values("Traceparent"), "Tracestate": r.Header.Values("Tracestate")}
		a.mu.Unlock()
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			typ, msg, err := c.Read(r.Context())
			if err == nil {
				_ = c.Write(r.Context(), typ, msg)
			}
			return
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// context returns the trace context the app got for path.
func (a *contextApp) context(path string) (traceparent, tracestate string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.got[path]
	return h.Get("Traceparent"), h.Get("Tracestate")
}

func startTracedMoat(t *testing.T, app *contextApp, col *otlptest.Collector, ratio string) *testMoat {
	t.Helper()
	cfg := strings.NewReplacer("COLLECTOR", col.URL, "RATIO", ratio).Replace(tracingConfig)
	return startMoat(t, app.srv.URL, cfg)
}

// getWith sends a GET with headers (name, value pairs) through c.
func getWith(t *testing.T, c *http.Client, url string, header ...string) int {
	t.Helper()
	resp, _ := get(t, c, url, header...)
	return resp.StatusCode
}

func TestTracesFollowARequestThroughEveryStageToTheApp(t *testing.T) {
	col := otlptest.Start(t)
	app := startContextApp(t)
	m := startTracedMoat(t, app, col, "1")
	c, u := signIn(t, m)
	cookie := sessionCookie(t, c)
	trusted := m.clientFrom(ingressAddr)

	// From a trusted proxy, the caller's trace continues through moat to
	// the app; every stage is a child of the request's span.
	const caller = "0af7651916cd43dd8448eb211c80319c"
	if code := getWith(t, trusted, "https://app.example.com/reports", "Cookie", cookie,
		"Traceparent", "00-"+caller+"-b7ad6b7169203331-01", "Tracestate", "lb=7"); code != 200 {
		t.Fatalf("signed-in request: %d", code)
	}
	spans := col.WaitTrace(t, caller, 10*time.Second, "moat.request", "moat.client_ip", "moat.route", "moat.session",
		"moat.policy", "moat.access", "moat.proxy", "moat.backend")
	root := spans["moat.request"]
	if root.ParentSpanID != "b7ad6b7169203331" {
		t.Errorf("the request's span has parent %q, want the trusted caller's", root.ParentSpanID)
	}
	for name, want := range map[string]string{
		"http.route": "app.example.com", "http.response.status_code": "200", "enduser.id": u.ID,
		"client.address": ingressAddr, "url.path": "/reports", "http.request.method": "GET",
	} {
		if got := root.Attributes[name]; got != want {
			t.Errorf("request span %s = %q, want %q", name, got, want)
		}
	}
	if _, ok := root.Attributes["user.email"]; ok {
		t.Error("the request span carries the user's email")
	}
	for _, name := range []string{"moat.client_ip", "moat.route", "moat.session", "moat.policy", "moat.access", "moat.proxy"} {
		if spans[name].ParentSpanID != root.SpanID {
			t.Errorf("%s is not a child of the request's span", name)
		}
	}
	policy := spans["moat.policy"].Attributes
	if policy["moat.policy.name"] != "guard" || policy["moat.policy.rule_priority"] != "2147483647" || policy["moat.policy.action"] != "allow" {
		t.Errorf("policy span %v: want guard's default rule, allow", policy)
	}
	if got := spans["moat.access"].Attributes["moat.access.decision"]; got != "pass" {
		t.Errorf("access decision %q, want pass", got)
	}
	backend := spans["moat.backend"]
	if backend.ParentSpanID != spans["moat.proxy"].SpanID || backend.Kind != 3 {
		t.Errorf("backend span %+v: want a client span under moat.proxy", backend)
	}
	tp, ts := app.context("/reports")
	if want := "00-" + caller + "-" + backend.SpanID + "-01"; tp != want || ts != "lb=7" {
		t.Errorf("the app got traceparent %q tracestate %q, want %q lb=7", tp, ts, want)
	}

	// A policy refusal ends the trace at the policy, with the rule.
	const refused = "1af7651916cd43dd8448eb211c80319c"
	if code := getWith(t, trusted, "https://app.example.com/secret/plans", "Cookie", cookie,
		"Traceparent", "00-"+refused+"-b7ad6b7169203331-01"); code != 404 {
		t.Fatalf("hidden path: %d", code)
	}
	spans = col.WaitTrace(t, refused, 10*time.Second, "moat.request", "moat.policy")
	if p := spans["moat.policy"].Attributes; p["moat.policy.rule_priority"] != "100" || p["moat.policy.outcome"] != "deny(404)" {
		t.Errorf("policy span %v: want rule 100, deny(404)", p)
	}
	if _, ok := spans["moat.proxy"]; ok {
		t.Error("a refused request has a proxy span")
	}

	// A WebSocket handshake carries the trace context to the app too.
	const socket = "2af7651916cd43dd8448eb211c80319c"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://app.example.com/ws", &websocket.DialOptions{HTTPClient: trusted,
		HTTPHeader: http.Header{"Cookie": {cookie}, "Traceparent": {"00-" + socket + "-b7ad6b7169203331-01"}}})
	if err != nil {
		t.Fatalf("WebSocket: %v", err)
	}
	echo(t, ws, "hello")
	ws.Close(websocket.StatusNormalClosure, "")
	spans = col.WaitTrace(t, socket, 10*time.Second, "moat.request", "moat.backend")
	if tp, _ := app.context("/ws"); tp != "00-"+socket+"-"+spans["moat.backend"].SpanID+"-01" {
		t.Errorf("the WebSocket handshake reached the app with traceparent %q", tp)
	}
	if spans["moat.request"].Attributes["moat.websocket"] != "true" {
		t.Error("the request span does not say it became a WebSocket")
	}
}

func TestAClientsTraceparentIsNotBelievedFromAnUntrustedPeer(t *testing.T) {
	col := otlptest.Start(t)
	app := startContextApp(t)
	m := startTracedMoat(t, app, col, "1")
	c, _ := signIn(t, m)
	const claimed = "3af7651916cd43dd8448eb211c80319c"
	if code := getWith(t, c, "https://app.example.com/mine", "Traceparent", "00-"+claimed+"-b7ad6b7169203331-01", "Tracestate", "evil=1"); code != 200 {
		t.Fatalf("signed-in request: %d", code)
	}
	tp, ts := app.context("/mine")
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[1] == claimed || ts != "" {
		t.Fatalf("the app got traceparent %q tracestate %q: want moat's own trace, not the client's", tp, ts)
	}
	spans := col.WaitTrace(t, parts[1], 10*time.Second, "moat.request", "moat.backend")
	if spans["moat.request"].ParentSpanID != "" {
		t.Errorf("the request's span has parent %q, want none (a trace of moat's own)", spans["moat.request"].ParentSpanID)
	}
	if len(col.Trace(claimed)) != 0 {
		t.Error("spans joined the trace the client named")
	}
}

func TestSampleRatioZeroExportsNothingWhateverTheCallerAsks(t *testing.T) {
	col := otlptest.Start(t)
	app := startContextApp(t)
	m := startTracedMoat(t, app, col, "0")
	c, _ := signIn(t, m)
	cookie := sessionCookie(t, c)
	trusted := m.clientFrom(ingressAddr)
	const caller = "4af7651916cd43dd8448eb211c80319c"
	for range 20 {
		if code := getWith(t, trusted, "https://app.example.com/r", "Cookie", cookie,
			"Traceparent", "00-"+caller+"-b7ad6b7169203331-01"); code != 200 {
			t.Fatalf("request: %d", code)
		}
	}
	// The context still reaches the app, marked not sampled, so the app
	// does not trace what moat does not.
	if tp, _ := app.context("/r"); !strings.HasPrefix(tp, "00-"+caller+"-") || !strings.HasSuffix(tp, "-00") {
		t.Errorf("the app got traceparent %q, want the caller's trace marked not sampled", tp)
	}
	// Stopping moat sends every queued span; there must be none.
	m.cancel()
	err := <-m.done
	m.done <- err
	if spans := col.Spans(); len(spans) != 0 {
		t.Errorf("sample_ratio 0 exported %d spans, first %+v", len(spans), spans[0])
	}
}

func TestTracingChangesOnlyWithARestart(t *testing.T) {
	m := startMoat(t, echoBackend(t).URL, baseConfig)
	data, err := os.ReadFile(m.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path, append(data, "tracing: {otlp_endpoint: \"http://127.0.0.1:4318\"}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	err = m.server.Reload(context.Background(), "test")
	if err == nil || !strings.Contains(err.Error(), "tracing change only with a restart") {
		t.Fatalf("reload with tracing turned on: %v, want a refusal naming tracing", err)
	}
	if m.server.process.tracer != nil {
		t.Error("a refused reload turned tracing on")
	}
}
