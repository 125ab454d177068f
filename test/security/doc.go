// Package security is moat's standing regression suite against the bug
// classes found in its peers' security advisories (oauth2-proxy, Traefik,
// Caddy, authentik, Authelia): one test per class, one subtest per
// advisory, named after it, so that `go test -run 'CVE-2025-32431'` finds
// the check for that advisory. Findings of moat's own hostile review stay
// fixed in TestIssue12FindingsStayFixed, one subtest each ("issue 12 #9").
//
// The tests are black-box: they build the moat binary once per run, start it
// with a configuration file on 127.0.0.1 (two processes sharing a real
// PostgreSQL where a class is about many instances), put a real HTTP app
// behind it that reports what reached it, and assert only what a client and
// the app can see over HTTP. They do not depend on how sign-in, sessions or
// the store are built, so they hold across redesigns of those parts.
//
// Run them with scripts/test, which installs PostgreSQL:
//
//	scripts/test ./test/security/
package security
