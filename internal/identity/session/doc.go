// Package session keeps moat's server-side sessions: the cookie (a random
// id; the store keeps only its hash), a cache in front of the store that
// checks each session again every few seconds and remembers unknown ids
// briefly, starting a session (no fixation) and ending one. Identify puts
// the user and the session on the request once; nothing after it fetches
// the session again. The process holds one Sessions, so a reload keeps the
// cache.
package session
