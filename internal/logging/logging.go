// Package logging builds moat's logger: one JSON object per line on stderr,
// either in log/slog's own form ("json") or in the structured form Google
// Cloud Logging reads from a container's output ("gcp": severity, message
// and, on access lines, httpRequest), so Cloud Run and GKE show each line's
// level and each request as a request.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"time"
)

// AccessMessage is the message of the one access line moat writes per
// request. In the gcp format its request attributes (AccessKeys) move into
// Cloud Logging's httpRequest object.
const AccessMessage = "request"

// The access line's attribute keys that the gcp format turns into
// httpRequest fields. The server writes them; they are part of moat's
// documented log format.
const (
	KeyMethod    = "method"
	KeyScheme    = "scheme"
	KeyHost      = "host"
	KeyPath      = "path"
	KeyStatus    = "status"
	KeyBytes     = "bytes"
	KeyDuration  = "duration_ms"
	KeyClientIP  = "client_ip"
	KeyProto     = "proto"
	KeyUserAgent = "user_agent"
)

// New returns a logger writing to w in format ("json" or "gcp") at level
// ("debug", "info", "warn" or "error"; info when unknown).
func New(w io.Writer, format, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	if format != "gcp" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
	}
	return slog.New(&gcpHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: gcpTopLevel})})
}

// gcpTopLevel renames slog's level and msg to Cloud Logging's severity and
// message; time stays "time" (RFC 3339), which Cloud Logging reads too.
func gcpTopLevel(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		lvl, _ := a.Value.Any().(slog.Level)
		return slog.String("severity", Severity(lvl))
	case slog.MessageKey:
		a.Key = "message"
	}
	return a
}

// Severity is Cloud Logging's name for a slog level.
func Severity(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "DEBUG"
	case l < slog.LevelWarn:
		return "INFO"
	case l < slog.LevelError:
		return "WARNING"
	case l < slog.LevelError+4:
		return "ERROR"
	}
	return "CRITICAL"
}

// gcpHandler rewrites access lines so that their request attributes form
// Cloud Logging's httpRequest object; every other line passes unchanged.
type gcpHandler struct{ slog.Handler }

func (h *gcpHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &gcpHandler{h.Handler.WithAttrs(as)}
}

func (h *gcpHandler) WithGroup(name string) slog.Handler {
	return &gcpHandler{h.Handler.WithGroup(name)}
}

func (h *gcpHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != AccessMessage {
		return h.Handler.Handle(ctx, r)
	}
	var req httpRequest
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if !req.take(a) {
			out.AddAttrs(a)
		}
		return true
	})
	out.AddAttrs(slog.Any("httpRequest", req.group()))
	return h.Handler.Handle(ctx, out)
}

// httpRequest collects Cloud Logging's HttpRequest fields from an access
// line (cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry#HttpRequest).
type httpRequest struct {
	method, scheme, host, path, remoteIP, protocol, userAgent string
	status                                                    int64
	size                                                      int64
	latency                                                   time.Duration
	hasSize, hasLatency                                       bool
}

// take records a if it is one of the request attributes.
func (q *httpRequest) take(a slog.Attr) bool {
	v := a.Value.Resolve()
	switch a.Key {
	case KeyMethod:
		q.method = v.String()
	case KeyScheme:
		q.scheme = v.String()
	case KeyHost:
		q.host = v.String()
	case KeyPath:
		q.path = v.String()
	case KeyClientIP:
		q.remoteIP = v.String()
	case KeyProto:
		q.protocol = v.String()
	case KeyUserAgent:
		q.userAgent = v.String()
	case KeyStatus:
		q.status = v.Int64()
	case KeyBytes:
		q.size, q.hasSize = v.Int64(), true
	case KeyDuration:
		q.latency, q.hasLatency = time.Duration(v.Float64()*float64(time.Millisecond)), true
	default:
		return false
	}
	return true
}

// group renders the collected fields as Cloud Logging's JSON mapping wants
// them: int64 fields as strings, the latency as seconds with an "s".
func (q *httpRequest) group() slog.Value {
	attrs := []slog.Attr{slog.String("requestMethod", q.method)}
	url := q.path
	if q.host != "" {
		url = q.host + url
		if q.scheme != "" {
			url = q.scheme + "://" + url
		}
	}
	attrs = append(attrs, slog.String("requestUrl", url), slog.Int64("status", q.status))
	if q.hasSize {
		attrs = append(attrs, slog.String("responseSize", strconv.FormatInt(q.size, 10)))
	}
	if q.userAgent != "" {
		attrs = append(attrs, slog.String("userAgent", q.userAgent))
	}
	if q.remoteIP != "" {
		attrs = append(attrs, slog.String("remoteIp", q.remoteIP))
	}
	if q.hasLatency {
		attrs = append(attrs, slog.String("latency", strconv.FormatFloat(q.latency.Seconds(), 'f', -1, 64)+"s"))
	}
	if q.protocol != "" {
		attrs = append(attrs, slog.String("protocol", q.protocol))
	}
	return slog.GroupValue(attrs...)
}
