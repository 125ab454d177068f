// Package request carries what moat learns about a request as it passes the
// front door (its id, the client's address, the route, the signed-in user)
// from one stage to the next through the request's context.
//
// Stages (policy, auth, proxy) know nothing of each other; they meet here.
package request

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"hash/fnv"
	"net/http"
	"net/netip"
	"time"

	"github.com/moat-dev/moat/internal/config"
)

// StatusClientClosed is the status moat logs and counts for a request whose
// client went away before an answer was ready (nginx's 499). It is never
// sent: nobody is left to read it, and a client that left is not a backend
// failure, so it must not count as a 5xx that pages someone (issue 13).
const StatusClientClosed = 499

// Info is what moat knows about one request. Stages fill it in order: the
// server sets ID, Start, ClientIP, Scheme and Route; sign-in sets User.
type Info struct {
	// ID identifies the request in logs, error pages and the
	// X-Request-Id header sent to the backend.
	ID    string
	Start time.Time
	// ClientIP is the client's address, resolved through trusted proxies.
	ClientIP netip.Addr
	// Scheme is "https" or "http" as the client used it.
	Scheme string
	// Route is the matched route; nil for requests that matched none.
	Route *config.Route
	// User is the signed-in user, when the request carries a valid session
	// or token; empty otherwise.
	User User
	// Session is the sign-in the request's cookie names, as sign-in found
	// it (nil for anonymous requests and bearer tokens). Every later check
	// reads it here rather than fetching the session again.
	Session *Session
	// Decision notes what the security policy did, for the access log.
	Decision string
	// Original is, for an ingress's forward-auth request, the request it
	// asks about ("GET dash.example.com/reports"), for the access log.
	Original string
}

// User is a signed-in identity as the rest of moat sees it.
type User struct {
	ID       string
	Email    string
	Name     string
	Groups   []string
	Provider string // "password" or an SSO provider's name
	// HostedDomain is the domain an SSO provider vouched for (Google's
	// hd claim), empty otherwise; domain: allow members match it too.
	HostedDomain string
	// SessionID is the server-side session's hash, used to find and close
	// the WebSockets it opened when it is revoked; never the cookie value.
	SessionID string
}

// Session is a browser sign-in as the checks after sign-in need it. It is
// shared by the requests of one session and never changed: a change (a
// second factor passed) makes a new one.
type Session struct {
	// IDHash is the session id's hash, as the store keeps it.
	IDHash string
	// Provider is "password" or the SSO provider signed in with.
	Provider string
	// AuthTime is when the user last proved who they are (for max_age and
	// the console's re-authentication).
	AuthTime time.Time
	// MFA reports whether the session passed a second factor.
	MFA bool
	// MustChangePassword: a one-time password signed this session in, and
	// nothing opens until the user chooses their own.
	MustChangePassword bool
}

// SignedIn reports whether u names a user.
func (u User) SignedIn() bool { return u.Email != "" }

// Fingerprint is a digest of what the app is told about u (its id, email,
// display name and groups, in the identity headers and the assertion).
// An app that reads the identity once, as Streamlit does when its
// WebSocket connects, holds a stale one when the fingerprint changes.
func (u User) Fingerprint() uint64 {
	h := fnv.New64a()
	for _, s := range [...]string{u.ID, u.Email, u.Name} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	for _, g := range u.Groups {
		h.Write([]byte(g))
		h.Write([]byte{','})
	}
	return h.Sum64()
}

type ctxKey struct{}

// With returns r carrying info.
func With(r *http.Request, info *Info) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))
}

// From returns the Info of r. A request that did not pass the server's
// front stage (as in a unit test) gets a fresh Info with a new ID.
func From(r *http.Request) *Info {
	if info, ok := r.Context().Value(ctxKey{}).(*Info); ok {
		return info
	}
	return &Info{ID: NewID(), Start: time.Now()}
}

// FromContext is From for code that has only the context.
func FromContext(ctx context.Context) (*Info, bool) {
	info, ok := ctx.Value(ctxKey{}).(*Info)
	return info, ok
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a random request id: 16 characters, 80 bits.
func NewID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
