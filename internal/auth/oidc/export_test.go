package oidc

import "time"

var timeZero time.Time

// SetDiscoveryRetry shortens the discovery back-off for a test and returns
// a function that restores it.
func SetDiscoveryRetry(d time.Duration) func() {
	old := discoveryRetry
	discoveryRetry = d
	return func() { discoveryRetry = old }
}
