// Package throttle is moat's brute-force protection: failed attempts
// counted per key (an account, a client address), a doubling wait after a
// few, a lock after many. Throttle is the interface the sign-in and the
// second factor use; the memory implementation counts per instance, and an
// implementation on Redis or the store counts for the cluster.
package throttle
