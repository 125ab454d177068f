// Package e2e holds moat's end-to-end tests: the real moat binary, a real
// Streamlit app (examples/streamlit-dashboard) and real headless Chromium,
// all on 127.0.0.1. Run them with scripts/test, which installs the tools;
// `go test ./test/e2e/` works too once chromium and streamlit are there.
//
// Screenshots land in test/e2e/test-output/ (git-ignored).
package e2e
