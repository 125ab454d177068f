package e2e

import "testing"

// The harness's own parsing, so that a wrong number in an end-to-end failure
// is moat's and not the harness's.
func TestSumMetricAddsOnlyMatchingSamples(t *testing.T) {
	const text = `# HELP moat_websockets_open Proxied WebSockets open now, by route.
# TYPE moat_websockets_open gauge
moat_websockets_open{route="localhost"} 2
moat_websockets_open{route="localhost/api/"} 1
moat_websockets_open_total{route="localhost"} 7
moat_backend_up{backend="dashboard"} 1
moat_plain 4
`
	tests := []struct {
		name   string
		metric string
		labels []string
		want   float64
		found  bool
	}{
		{"a label picks one sample", "moat_websockets_open", []string{`route="localhost"`}, 2, true},
		{"no label sums every sample of the name, not longer names", "moat_websockets_open", nil, 3, true},
		{"a metric without labels", "moat_plain", nil, 4, true},
		{"an unknown label matches nothing", "moat_websockets_open", []string{`route="other"`}, 0, false},
		{"an unknown metric matches nothing", "moat_nothing", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := sumMetric(text, tt.metric, tt.labels...)
			if got != tt.want || found != tt.found {
				t.Errorf("sumMetric(%s, %v) = %v, %v; want %v, %v", tt.metric, tt.labels, got, found, tt.want, tt.found)
			}
		})
	}
}
