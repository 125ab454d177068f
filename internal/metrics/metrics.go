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
