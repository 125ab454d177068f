package web

import (
	"encoding/json"
	"net/http"
)

// WriteJSON answers a script of moat's own pages (the passkey buttons) with
// v as JSON, never cached, with the headers every page carries.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	SecurityHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
