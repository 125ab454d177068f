// Package dashboard holds the example Streamlit dashboard (app.py, its
// pinned requirements and its Streamlit settings) so that
// `moat demo --streamlit` can run it from the moat binary alone.
package dashboard

import "embed"

// Files are app.py, requirements.txt and .streamlit/config.toml.
//
//go:embed app.py requirements.txt .streamlit/config.toml
var Files embed.FS
