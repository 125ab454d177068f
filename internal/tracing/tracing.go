// Package tracing traces requests through moat's front door with
// OpenTelemetry: a server span per request and one child span per stage
// (client IP, route, session, security policy, access decision, proxy, and
// the round trip to the app), exported over OTLP/HTTP, with W3C trace
// context (traceparent, tracestate) sent on to the app so its spans join
// moat's trace.
//
// It is off unless tracing.otlp_endpoint is set, and free when off: every
// hook first reads one process-wide counter of live Tracers and returns at
// once while it is zero, allocating nothing (BenchmarkFrontDoor and
// BenchmarkProxyHTTP measure it). A request that is not sampled costs the
// stages nothing either; only its trace context still goes to the app,
// marked not sampled.
//
// A caller's traceparent is believed only from server.trusted_proxies (the
// load balancer or ingress that starts the trace), and even then only as a
// parent: moat's spans join that trace, but whether a request is sampled
// is moat's own coin against sample_ratio, never the caller's flag or
// trace id (TraceIDRatioBased would let a caller pick ids under the bound).
// A caller that says "not sampled" is heeded, which only lowers the share.
// From anyone else the header is ignored and moat starts a trace of its
// own; either way the app receives moat's traceparent, not the client's.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/moat-dev/moat/internal/clientip"
	"github.com/moat-dev/moat/internal/config"
)

// scope names the instrumentation in every span.
const scope = "github.com/moat-dev/moat"

// Bounds on what tracing holds and sends: spans wait in a queue of
// maxQueue (more are dropped, never blocking a request) and go out in
// batches of maxBatch at least every batchEvery; one export gives up after
// exportTimeout.
const (
	maxQueue      = 4096
	maxBatch      = 512
	batchEvery    = 2 * time.Second
	exportTimeout = 10 * time.Second
)

// active counts the live Tracers of the process; while it is zero every
// hook returns at once.
var active atomic.Int32

// propagator reads and writes traceparent and tracestate.
var propagator = propagation.TraceContext{}

// Tracer traces the requests of one moat process. A nil *Tracer is
// tracing off: Start returns the request as it came.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	stopped  atomic.Bool
}

// New builds the Tracer of cfg: nil (off) when tracing.otlp_endpoint is
// unset. It contacts nothing: spans go out in the background, and a
// collector that cannot be reached costs dropped spans and a log line,
// never a request.
func New(cfg config.Tracing, log *slog.Logger) (*Tracer, error) {
	if cfg.OTLPEndpoint == "" {
		return nil, nil
	}
	endpoint, err := TracesURL(cfg.OTLPEndpoint)
	if err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(endpoint),
		otlptracehttp.WithTimeout(exportTimeout))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "moat"
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp,
			sdktrace.WithMaxQueueSize(maxQueue),
			sdktrace.WithMaxExportBatchSize(maxBatch),
			sdktrace.WithBatchTimeout(batchEvery),
			sdktrace.WithExportTimeout(exportTimeout)),
		sdktrace.WithSampler(sampler{ratio: cfg.Ratio()}),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))),
	)
	if log != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("tracing: spans could not be exported", "endpoint", endpoint, "err", err.Error())
		}))
	}
	active.Add(1)
	return &Tracer{provider: provider, tracer: provider.Tracer(scope)}, nil
}

// TracesURL is where spans are posted for otlp_endpoint: the URL as
// written when it has a path, else its /v1/traces (as OTLP/HTTP's
// OTEL_EXPORTER_OTLP_ENDPOINT is read).
func TracesURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("tracing: invalid otlp_endpoint %q: write http://collector:4318 or https://…", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// Shutdown sends the spans still queued, within ctx, and stops the
// Tracer; later calls do nothing.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil || !t.stopped.CompareAndSwap(false, true) {
		return nil
	}
	active.Add(-1)
	return t.provider.Shutdown(ctx)
}

// Peers says which peers are trusted proxies (clientip.Resolver).
type Peers interface {
	IsTrusted(netip.Addr) bool
}

// Start begins r's server span, the parent of every stage's. The
// caller's traceparent is its parent only when the peer is one of
// trusted. It returns r carrying the span, and the span.
func (t *Tracer) Start(r *http.Request, trusted Peers) (*http.Request, Span) {
	if t == nil {
		return r, Span{}
	}
	ctx := r.Context()
	if trusted != nil && trusted.IsTrusted(clientip.PeerAddr(r.RemoteAddr)) {
		ctx = propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	ctx, s := t.tracer.Start(ctx, "moat.request", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("server.address", r.Host),
		))
	if !s.IsRecording() {
		// Not sampled: no stage is traced, but the context still goes to
		// the app (flags 00), so the app does not sample it either.
		return r.WithContext(ctx), Span{}
	}
	return r.WithContext(ctx), Span{s: s}
}

// Start begins a stage's span, a child of the request's span in ctx. When
// tracing is off or the request is not sampled it returns the zero Span,
// whose methods do nothing.
func Start(ctx context.Context, name string) Span {
	if active.Load() == 0 {
		return Span{}
	}
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return Span{}
	}
	_, s := parent.TracerProvider().Tracer(scope).Start(ctx, name)
	return Span{s: s}
}

// StartRequest is Start for a stage with stages of its own: it also
// returns r carrying the new span (r itself when the Span is zero).
func StartRequest(r *http.Request, name string) (*http.Request, Span) {
	if active.Load() == 0 {
		return r, Span{}
	}
	parent := trace.SpanFromContext(r.Context())
	if !parent.IsRecording() {
		return r, Span{}
	}
	ctx, s := parent.TracerProvider().Tracer(scope).Start(r.Context(), name)
	return r.WithContext(ctx), Span{s: s}
}

// Span is one stage's span. The zero Span (tracing off, request not
// sampled) does nothing; callers that compute attributes ask Recording
// first, so that an untraced request pays for none.
type Span struct {
	s trace.Span
}

// Recording reports whether the span records (attributes are wanted).
func (s Span) Recording() bool { return s.s != nil }

// End ends the span with attrs.
func (s Span) End(attrs ...attribute.KeyValue) {
	if s.s == nil {
		return
	}
	if len(attrs) > 0 {
		s.s.SetAttributes(attrs...)
	}
	s.s.End()
}

// Fail marks the span failed with err (the message, never a secret:
// callers pass errors that name no credentials).
func (s Span) Fail(err error) {
	if s.s == nil || err == nil {
		return
	}
	s.s.RecordError(err)
	s.s.SetStatus(codes.Error, err.Error())
}

// Error marks the span failed without an error value (a 5xx answer).
func (s Span) Error(description string) {
	if s.s == nil {
		return
	}
	s.s.SetStatus(codes.Error, description)
}

// Fail marks the span of the stage in ctx failed with err.
func Fail(ctx context.Context, err error) {
	if active.Load() == 0 || err == nil {
		return
	}
	Span{s: recording(trace.SpanFromContext(ctx))}.Fail(err)
}

func recording(s trace.Span) trace.Span {
	if !s.IsRecording() {
		return nil
	}
	return s
}

// Backend begins the span of one round trip to the app for out, the
// request the proxy sends, and puts its context in out's traceparent and
// tracestate, in place of any the client sent (out's header is replaced
// by a copy, since out may share the client's). When tracing is on but
// the request is not sampled, out still gets the request's context,
// marked not sampled. End the span with the answer's status.
func Backend(out *http.Request) Span {
	if active.Load() == 0 {
		return Span{}
	}
	ctx := out.Context()
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		return Span{}
	}
	var s trace.Span
	if parent.IsRecording() {
		ctx, s = parent.TracerProvider().Tracer(scope).Start(ctx, "moat.backend", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("http.request.method", out.Method),
				attribute.String("server.address", out.URL.Host),
			))
	}
	h := out.Header.Clone()
	delete(h, "Traceparent")
	delete(h, "Tracestate")
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
	out.Header = h
	return Span{s: s}
}

// Status ends a backend span with the app's answer: its status, or err.
func (s Span) Status(status int, err error) {
	if s.s == nil {
		return
	}
	if err != nil {
		s.Fail(err)
	} else {
		s.s.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			s.s.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	s.s.End()
}

// Transport wraps base, the proxy's round tripper, so that each round
// trip to the app is a Backend span whose context the app receives.
func Transport(base http.RoundTripper) http.RoundTripper { return transport{base} }

type transport struct{ base http.RoundTripper }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if active.Load() == 0 {
		return t.base.RoundTrip(req)
	}
	// The header is replaced, not changed in place: a RoundTripper must
	// not modify its request.
	out := *req
	span := Backend(&out)
	resp, err := t.base.RoundTrip(&out)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	span.Status(status, err)
	return resp, err
}

// sampler keeps ratio of the requests moat starts or continues, by moat's
// own coin; a stage's span follows its parent's decision. See the package
// comment for why the caller's flag and trace id cannot raise the share.
type sampler struct{ ratio float64 }

func (s sampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	parent := trace.SpanContextFromContext(p.ParentContext)
	keep := false
	switch {
	case parent.IsValid() && !parent.IsRemote():
		keep = parent.IsSampled()
	case parent.IsValid() && !parent.IsSampled():
		keep = false
	default:
		keep = s.ratio > 0 && rand.Float64() < s.ratio
	}
	res := sdktrace.SamplingResult{Decision: sdktrace.Drop, Tracestate: parent.TraceState()}
	if keep {
		res.Decision = sdktrace.RecordAndSample
	}
	return res
}

func (s sampler) Description() string { return fmt.Sprintf("moat(ratio=%g)", s.ratio) }
