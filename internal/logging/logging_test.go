package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func decodeLine(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON object: %q: %v", buf.String(), err)
	}
	buf.Reset()
	return rec
}

func TestGCPLinesCarrySeverityAndMessage(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "gcp", "debug").With("component", "auth")
	for _, tc := range []struct {
		level slog.Level
		want  string
	}{
		{slog.LevelDebug, "DEBUG"}, {slog.LevelInfo, "INFO"}, {slog.LevelWarn, "WARNING"},
		{slog.LevelError, "ERROR"}, {slog.LevelError + 4, "CRITICAL"},
	} {
		log.Log(t.Context(), tc.level, "something happened", "kid", "abc")
		rec := decodeLine(t, &buf)
		if rec["severity"] != tc.want || rec["message"] != "something happened" {
			t.Errorf("%v: severity %v message %v, want %s", tc.level, rec["severity"], rec["message"], tc.want)
		}
		if rec["level"] != nil || rec["msg"] != nil {
			t.Errorf("%v: slog's own level/msg keys remain: %v", tc.level, rec)
		}
		if rec["kid"] != "abc" || rec["component"] != "auth" || rec["time"] == nil {
			t.Errorf("%v: attributes lost: %v", tc.level, rec)
		}
	}
}

func TestGCPAccessLinesCarryHTTPRequest(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "gcp", "info")
	log.Info(AccessMessage, "request_id", "r1", KeyMethod, "POST", KeyScheme, "https", KeyHost, "dash.example.com",
		KeyPath, "/_moat/login", KeyStatus, 303, KeyDuration, 12.5, KeyBytes, int64(0), KeyClientIP, "203.0.113.7",
		KeyProto, "HTTP/2.0", KeyUserAgent, "Mozilla/5.0", "user", "alice@example.com")
	rec := decodeLine(t, &buf)
	hr, ok := rec["httpRequest"].(map[string]any)
	if !ok {
		t.Fatalf("no httpRequest in %v", rec)
	}
	want := map[string]any{
		"requestMethod": "POST", "requestUrl": "https://dash.example.com/_moat/login", "status": float64(303),
		"responseSize": "0", "userAgent": "Mozilla/5.0", "remoteIp": "203.0.113.7", "latency": "0.0125s", "protocol": "HTTP/2.0",
	}
	for k, v := range want {
		if hr[k] != v {
			t.Errorf("httpRequest.%s = %v, want %v", k, hr[k], v)
		}
	}
	if rec["request_id"] != "r1" || rec["user"] != "alice@example.com" {
		t.Errorf("moat's own keys lost: %v", rec)
	}
	for _, k := range []string{KeyMethod, KeyStatus, KeyClientIP, KeyUserAgent} {
		if _, dup := rec[k]; dup {
			t.Errorf("%s is both in httpRequest and at the top level", k)
		}
	}
}

func TestJSONIsSlogsOwnForm(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, "json", "warn").Info("hidden")
	if buf.Len() != 0 {
		t.Fatalf("an info line passed level warn: %s", buf.String())
	}
	New(&buf, "json", "info").Info(AccessMessage, KeyStatus, 200)
	rec := decodeLine(t, &buf)
	if rec["level"] != "INFO" || rec["msg"] != AccessMessage || rec[KeyStatus] != float64(200) || rec["httpRequest"] != nil {
		t.Errorf("json line %v", rec)
	}
	if strings.Contains(buf.String(), "severity") {
		t.Error("json line has severity")
	}
}
