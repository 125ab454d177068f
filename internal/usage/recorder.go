// Package usage counts who used which route (issue 14): sign-ins, the
// users of each day, and each sign-in session's first and last use,
// WebSocket time and active minutes.
//
// Sign-in and the proxy report use through one small interface, Recorder;
// the Collector behind it keeps counts in memory, per instance, and writes
// them to the store every few seconds as increments that add up across
// instances. A request pays one map update at most and never waits for the
// store; when the store is unreachable the counts wait in memory, within a
// bound, and what exceeds it is dropped and counted
// (moat_usage_dropped_total).
//
// Report reads usage back for the admin console's usage page and for
// `moat usage`; Chart draws it as SVG.
package usage

import (
	"net/http"

	"github.com/moat-dev/moat/internal/request"
)

// Recorder is what sign-in and the proxy tell about use. Its methods are
// cheap (a map update at most), never wait for the store and are safe for
// concurrent use. A nil Recorder is valid wherever one is taken, and
// records nothing.
type Recorder interface {
	// SignIn counts a successful sign-in through provider, headed to
	// info's route.
	SignIn(info *request.Info, provider string)
	// Visit notes that info's signed-in user reached the app of info's
	// route. A visit counts once per session, route and day, however
	// many requests it makes.
	Visit(info *request.Info)
	// OpenSocket notes a WebSocket that info's signed-in user opened on
	// info's route and returns what follows the socket: the proxy calls
	// its Message for every message the browser sends and its Close once.
	// It returns nil (whose methods do nothing) for anonymous sockets.
	OpenSocket(info *request.Info) *Socket
}

// Track calls rec.Visit for every request that reaches next and is use of
// the app: wrap a route's app with it, behind the route's access check.
// A browser's subresource loads (Sec-Fetch-Mode: no-cors: images,
// stylesheets, scripts, the favicon any page of the host fetches) are not
// use; page loads, the app's own fetch calls, WebSocket upgrades and
// requests of clients that are not browsers are.
func Track(rec Recorder, next http.Handler) http.Handler {
	if rec == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info, ok := request.FromContext(r.Context()); ok && r.Header.Get("Sec-Fetch-Mode") != "no-cors" {
			rec.Visit(info)
		}
		next.ServeHTTP(w, r)
	})
}
