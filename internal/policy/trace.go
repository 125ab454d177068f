package policy

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/moat-dev/moat/internal/tracing"
)

// trace ends the policy stage's span with the decision: the policy, the
// deciding rule's priority and configured action, the outcome. A refusal
// is the policy working, not an error. Nothing when the span does not
// record.
func (d Decision) trace(span tracing.Span) {
	if !span.Recording() {
		return
	}
	span.End(
		attribute.String("moat.policy.name", d.Policy),
		attribute.Int64("moat.policy.rule_priority", d.Priority),
		attribute.String("moat.policy.action", d.Action),
		attribute.String("moat.policy.outcome", d.Outcome()),
		attribute.Bool("moat.policy.allowed", d.Allowed),
	)
}
