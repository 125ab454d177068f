package auth

import (
	"context"
	"time"
)

// RecheckSessions runs one round of the SSO re-check at now, for a test
// that does not wait for Run's ticks.
func (s *Service) RecheckSessions(ctx context.Context, now time.Time) { s.recheckSessions(ctx, now) }

// SetTokenTTL makes a checked personal access token trusted for d instead
// of tokenVerifyEvery.
func (p *Process) SetTokenTTL(d time.Duration) { p.tokens.ttl = d }
