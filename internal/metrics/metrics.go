// Package metrics holds moat's Prometheus collectors. They are served on the
// internal listener only, never on the public one.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every moat collector (and the Go runtime's).
var Registry = prometheus.NewRegistry()

var (
	// Requests counts finished requests by route and status code.
	Requests = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_http_requests_total", Help: "Requests answered, by route and status code.",
	}, []string{"route", "code"}))
	// Duration observes request latency by route.
	Duration = register(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "moat_http_request_duration_seconds", Help: "Time from request to the end of the response, by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"}))
	// WebSockets is the number of open proxied WebSockets by route.
	WebSockets = register(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "moat_websockets_open", Help: "Proxied WebSockets open now, by route.",
	}, []string{"route"}))
	// BackendUp is 1 while a backend replica's health check passes, else
	// 0; replica is the replica's URL (the backend's url when it has one).
	BackendUp = register(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "moat_backend_up", Help: "1 while the backend replica's health check passes, 0 otherwise.",
	}, []string{"backend", "replica"}))
	// ConfigReloads counts reload attempts by result (ok or error).
	ConfigReloads = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_config_reloads_total", Help: "Configuration reloads, by result.",
	}, []string{"result"}))

	// SessionChecksFailed counts session checks the store could not
	// answer (unreachable): outcome is "cached" (the cache vouched for the
	// session, within store_outage_grace) or "refused" (503).
	SessionChecksFailed = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_session_checks_failed_total", Help: "Session checks the store could not answer, by outcome (cached: served from the cache within store_outage_grace; refused: 503).",
	}, []string{"outcome"}))

	// Usage (internal/usage): counts without per-user labels, so a
	// dashboard of them never names a person.

	// SignIns counts successful sign-ins by the route they were headed to
	// and the provider (password or an SSO provider's name).
	SignIns = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_signins_total", Help: "Successful sign-ins, by the route they were headed to and provider.",
	}, []string{"route", "provider"}))
	// WebSocketSeconds counts the time sign-in sessions had at least one
	// WebSocket open, by route.
	WebSocketSeconds = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_websocket_seconds_total", Help: "Seconds signed-in sessions had a WebSocket open, by route.",
	}, []string{"route"}))
	// WebSocketActiveMinutes counts the minutes in which a session's
	// browser sent a message over a WebSocket, by route.
	WebSocketActiveMinutes = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_websocket_active_minutes_total", Help: "Minutes in which a signed-in session's browser sent a WebSocket message, by route.",
	}, []string{"route"}))
	// UsageWrites counts the writes of usage to the store by result (ok
	// or error).
	UsageWrites = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_usage_writes_total", Help: "Writes of counted usage to the store, by result.",
	}, []string{"result"}))
	// UsageDropped counts usage this instance counted but could not keep:
	// reason is "full" (more sessions at once than it holds in memory) or
	// "store" (the store stayed unreachable until the retry bound).
	UsageDropped = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_usage_dropped_total", Help: "Usage records dropped, by reason (full: memory bound; store: store unreachable).",
	}, []string{"reason"}))

	// Sign-in throttles (internal/identity/throttle): no per-user or
	// per-address labels, so the series stay few whatever an attacker
	// sends.

	// SignInThrottled counts sign-in attempts (passwords, second-factor
	// codes) refused before they were checked, by the budget that refused
	// them: client, account_client, device, account (the slow-down of
	// unknown devices) or locked.
	SignInThrottled = register(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_signin_throttled_total", Help: "Sign-in attempts refused before being checked, by the budget that refused them (client, account_client, device, account, locked).",
	}, []string{"reason"}))
	// SignInLocks counts the locks a distributed attack put on an account's
	// sign-in from unknown devices.
	SignInLocks = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "moat_signin_locks_total", Help: "Accounts whose sign-in from unknown devices was locked after failures from many clients.",
	}))
)

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

func register[T prometheus.Collector](c T) T {
	Registry.MustRegister(c)
	return c
}

// Handler serves the registry in the Prometheus text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{})
}
