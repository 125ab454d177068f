// Package session keeps moat's server-side sessions: the cookie (a random
// id; the store keeps only its hash), a cache in front of the store that
// checks each session again every few seconds and remembers unknown ids
// briefly, starting a session (no fixation) and ending one. Identify puts
// the user and the session on the request once; nothing after it fetches
// the session again. The process holds one Sessions, so a reload keeps the
// cache.
//
// While the store cannot be reached (store.ErrUnavailable) a session is
// neither ended nor passed on a guess: the cache vouches for one the store
// confirmed within store_outage_grace, and any other gets a 503 that says
// the sign-in cannot be checked; a sign-out that cannot be stored fails;
// WebSockets close only for a session that really ended.
package session
