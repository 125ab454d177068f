package server

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"

	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/tracing"
)

// traceRequest ends the request's span with what the front door learnt,
// as the access log has it: the route, the answer, the client, the policy's
// decision, the user's id (never the email: traces often leave the
// organisation), the request the ingress asked about. Nothing when the
// span does not record.
func traceRequest(span tracing.Span, rec *recorder, r *http.Request, info *request.Info) {
	if !span.Recording() {
		return
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	attrs := []attribute.KeyValue{
		attribute.String("moat.request_id", info.ID),
		attribute.String("client.address", info.ClientIP.String()),
		attribute.String("url.scheme", info.Scheme),
		attribute.String("url.path", directory.LogPath(r.URL.Path)),
		attribute.Int("http.response.status_code", status),
	}
	if info.Route != nil {
		attrs = append(attrs, attribute.String("http.route", info.Route.Name()))
	}
	if info.User.SignedIn() {
		attrs = append(attrs, attribute.String("enduser.id", info.User.ID))
	}
	if info.Decision != "" {
		attrs = append(attrs, attribute.String("moat.policy.decision", info.Decision))
	}
	if info.Original != "" {
		attrs = append(attrs, attribute.String("moat.forward_auth", info.Original))
	}
	if rec.hijacked {
		attrs = append(attrs, attribute.Bool("moat.websocket", true))
	}
	if status >= 500 {
		span.Error(http.StatusText(status))
	}
	span.End(attrs...)
}
