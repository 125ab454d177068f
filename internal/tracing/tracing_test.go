package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/tracing/otlptest"
)

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestEveryHookIsFreeWhileTracingIsOff: with no Tracer in the process,
// the hooks every request passes allocate nothing and leave the request
// as it came (a client's traceparent included: moat is not part of the
// trace).
func TestEveryHookIsFreeWhileTracingIsOff(t *testing.T) {
	if active.Load() != 0 {
		t.Fatal("a Tracer of another test is still live")
	}
	r := httptest.NewRequest(http.MethodGet, "https://dash.example.com/", nil)
	r.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	var tracer *Tracer
	rt := Transport(roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, nil }))
	allocs := testing.AllocsPerRun(1000, func() {
		r2, root := tracer.Start(r, nil)
		Start(r2.Context(), "moat.policy").End()
		r3, span := StartRequest(r2, "moat.proxy")
		Backend(r3).Status(200, nil)
		_, _ = rt.RoundTrip(r3)
		Fail(r3.Context(), context.Canceled)
		span.End()
		root.End()
		if r3 != r {
			t.Fatal("a hook replaced the request")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per request with tracing off, want 0", allocs)
	}
	if got := r.Header.Get("Traceparent"); got != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Errorf("traceparent changed to %q with tracing off", got)
	}
}

// remote is a caller's span context, as a traceparent names it.
func remote(traceID string, sampled bool) context.Context {
	tid, _ := trace.TraceIDFromHex(traceID)
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	flags := trace.TraceFlags(0)
	if sampled {
		flags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
	return trace.ContextWithSpanContext(context.Background(), sc)
}

func share(s sampler, ctx context.Context, traceID func(i int) trace.TraceID) float64 {
	const n = 20000
	kept := 0
	for i := range n {
		if s.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: traceID(i), Name: "moat.request"}).Decision == sdktrace.RecordAndSample {
			kept++
		}
	}
	return float64(kept) / n
}

// TestACallerCannotRaiseTheShareOfRequestsTraced: neither the sampled flag
// nor trace ids chosen to pass a trace-id ratio bound (all zeros passes
// TraceIDRatioBased at any ratio) make moat trace more than sample_ratio
// of the requests; a caller's "not sampled" is heeded.
func TestACallerCannotRaiseTheShareOfRequestsTraced(t *testing.T) {
	zeros := func(int) trace.TraceID { return trace.TraceID{} }
	for _, tc := range []struct {
		name     string
		ratio    float64
		ctx      context.Context
		min, max float64
	}{
		{"no caller, ratio 1", 1, context.Background(), 1, 1},
		{"no caller, ratio 0", 0, context.Background(), 0, 0},
		{"a sampled caller, ratio 0", 0, remote("0af7651916cd43dd8448eb211c80319c", true), 0, 0},
		{"a sampled caller with a chosen trace id, ratio 0.1", 0.1, remote("00000000000000000000000000000000", true), 0.08, 0.12},
		{"an unsampled caller, ratio 1", 1, remote("0af7651916cd43dd8448eb211c80319c", false), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := share(sampler{ratio: tc.ratio}, tc.ctx, zeros)
			if got < tc.min || got > tc.max {
				t.Errorf("traced %.3f of the requests, want within [%g, %g]", got, tc.min, tc.max)
			}
		})
	}
}

func TestTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":                  "http://127.0.0.1:4318/v1/traces",
		"http://collector:4318/":                 "http://collector:4318/v1/traces",
		"https://api.example.com/otlp/v1/traces": "https://api.example.com/otlp/v1/traces",
	} {
		if got, err := TracesURL(in); err != nil || got != want {
			t.Errorf("TracesURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"collector:4318", "ftp://collector", "http://"} {
		if _, err := TracesURL(bad); err == nil {
			t.Errorf("TracesURL(%q) accepted", bad)
		}
	}
}

// trustAll trusts every peer.
type trustAll struct{}

func (trustAll) IsTrusted(netip.Addr) bool { return true }

// TestSpansReachARealReceiverAndTheAppGetsTheirContext exports a request's
// spans to an OTLP/HTTP receiver: the stages are children of the request's
// span, which continues the trusted caller's trace, and the traceparent on
// the request to the app names the backend span.
func TestSpansReachARealReceiverAndTheAppGetsTheirContext(t *testing.T) {
	col := otlptest.Start(t)
	tr, err := New(config.Tracing{OTLPEndpoint: col.URL, ServiceName: "moat-test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	const callerTrace = "0af7651916cd43dd8448eb211c80319c"
	r := httptest.NewRequest(http.MethodGet, "https://dash.example.com/reports", nil)
	r.Header.Set("Traceparent", "00-"+callerTrace+"-b7ad6b7169203331-01")
	r, root := tr.Start(r, trustAll{})
	Start(r.Context(), "moat.policy").End()
	r, proxySpan := StartRequest(r, "moat.proxy")
	var sent http.Header
	app := Transport(roundTripFunc(func(out *http.Request) (*http.Response, error) {
		sent = out.Header
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: out}, nil
	}))
	out := r.Clone(r.Context())
	if _, err := app.RoundTrip(out); err != nil {
		t.Fatal(err)
	}
	proxySpan.End()
	root.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := col.WaitTrace(t, callerTrace, 5*time.Second, "moat.request", "moat.policy", "moat.proxy", "moat.backend")
	if s := spans["moat.request"]; s.ParentSpanID != "b7ad6b7169203331" || s.Kind != 2 || s.Service != "moat-test" {
		t.Errorf("request span %+v: want the caller's span as parent, server kind, service moat-test", s)
	}
	if spans["moat.policy"].ParentSpanID != spans["moat.request"].SpanID || spans["moat.backend"].ParentSpanID != spans["moat.proxy"].SpanID {
		t.Errorf("stages are not children of their stage: %+v", spans)
	}
	if got, want := sent.Get("Traceparent"), "00-"+callerTrace+"-"+spans["moat.backend"].SpanID+"-01"; got != want {
		t.Errorf("the app got traceparent %q, want %q", got, want)
	}
	if out.Header.Get("Traceparent") != r.Header.Get("Traceparent") {
		t.Error("the round trip changed the request it was given")
	}
}

// BenchmarkHooksOff is every hook one proxied request passes, with tracing
// off: the whole price of tracing for a process that does not trace.
func BenchmarkHooksOff(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "https://dash.example.com/", nil)
	var tracer *Tracer
	rt := Transport(roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, nil }))
	b.ReportAllocs()
	for b.Loop() {
		r2, root := tracer.Start(r, nil)
		for _, stage := range []string{"moat.client_ip", "moat.route", "moat.session", "moat.policy", "moat.access"} {
			Start(r2.Context(), stage).End()
		}
		r3, span := StartRequest(r2, "moat.proxy")
		_, _ = rt.RoundTrip(r3)
		span.End()
		root.End()
	}
}
