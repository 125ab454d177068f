package policy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moat-dev/moat/internal/metrics"
)

var (
	decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_policy_decisions_total",
		Help: "Security policy decisions, by policy, rule priority (none: no rule matched), action and preview.",
	}, []string{"policy", "priority", "action", "preview"})
	counterFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_policy_counter_failures_total",
		Help: "Rate-limit counter lookups that failed (Redis unreachable), by policy and the counters_fail mode applied.",
	}, []string{"policy", "mode"})
)

func init() {
	metrics.Registry.MustRegister(decisions, counterFailures)
}
