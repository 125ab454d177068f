// Package otlptest runs a real OTLP/HTTP trace receiver on 127.0.0.1 for
// tests: it accepts what any OTLP exporter posts to /v1/traces (protobuf,
// gzip or not), decodes it with the OTLP protocol's own types
// (go.opentelemetry.io/proto/otlp) and keeps the spans for the test to
// look at.
package otlptest

import (
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds one export request.
const maxBody = 16 << 20

// Span is one received span, flattened for tests.
type Span struct {
	Name                          string
	TraceID, SpanID, ParentSpanID string // hex
	Kind                          tracepb.Span_SpanKind
	// Attributes holds each attribute's value as text (ints in decimal,
	// bools as true/false).
	Attributes map[string]string
	// Service is the resource's service.name.
	Service string
	// Error: the span's status is Error.
	Error bool
}

// Collector is a running receiver.
type Collector struct {
	// URL is its base, http://127.0.0.1:PORT: spans go to URL/v1/traces.
	URL string

	mu    sync.Mutex
	spans []Span
}

// Start runs a receiver until the test ends.
func Start(t testing.TB) *Collector {
	t.Helper()
	c := &Collector{}
	srv := httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *Collector) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "not an OTLP trace export", http.StatusNotFound)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, maxBody)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = io.LimitReader(zr, maxBody)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.add(&req)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (c *Collector) add(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, Span{
					Name:         s.GetName(),
					TraceID:      hex.EncodeToString(s.GetTraceId()),
					SpanID:       hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Kind:         s.GetKind(),
					Attributes:   attrs(s.GetAttributes()),
					Service:      service,
					Error:        s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
				})
			}
		}
	}
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.GetKey()] = text(kv.GetValue())
	}
	return m
}

func text(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	}
	return v.String()
}

// Spans returns every span received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Trace returns the spans received so far of one trace, by name.
func (c *Collector) Trace(traceID string) map[string]Span {
	out := map[string]Span{}
	for _, s := range c.Spans() {
		if s.TraceID == traceID {
			out[s.Name] = s
		}
	}
	return out
}

// WaitTrace waits up to timeout for the trace to hold a span of every
// name and returns its spans by name.
func (c *Collector) WaitTrace(t testing.TB, traceID string, timeout time.Duration, names ...string) map[string]Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := c.Trace(traceID)
		missing := ""
		for _, n := range names {
			if _, ok := got[n]; !ok {
				missing = n
				break
			}
		}
		if missing == "" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s has no %s span after %s; received %d spans: %v", traceID, missing, timeout, len(c.Spans()), c.Spans())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
