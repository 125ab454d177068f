// Package e2e holds moat's end-to-end tests: the real moat binary (built once
// per run from this checkout), the real Streamlit app of
// examples/streamlit-dashboard (started once per run, on first use) and real
// headless Chromium, all on 127.0.0.1 with free ports.
//
// Run them with scripts/test, which installs the tools:
//
//	scripts/test ./test/e2e/
//	scripts/test -short ./test/e2e/   # without the 36 s idle WebSocket wait
//
// `go test ./test/e2e/` works too once chromium and streamlit are installed.
// Without them the tests skip, except under CI=true, where they fail naming
// the missing install step. MOAT_CHROMIUM and MOAT_PYTHON override
// /usr/bin/chromium and python3; MOAT_NGINX and MOAT_CADDY the nginx and
// caddy on PATH (the forward-auth tests put them in front of moat).
//
// The harness: startMoat (a config file with free ports, data_dir and a
// self-signed certificate filled in; JSON logs captured; SIGTERM at the end),
// startStreamlit and sharedStreamlit, startIngress (nginx or Caddy in front of
// moat and an app, configured as the README shows), newBrowser (a fresh profile that trusts
// moat's certificate by its key; no certificate errors are ignored),
// recordWebSockets (what the page's WebSockets did, from DevTools events) and
// screenshot (PNG files in test/e2e/test-output/, git-ignored).
package e2e
