package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/web"
)

// Identify finds the request's session (session.Sessions.Identify, under
// this configuration's lifetimes): the user and the session go on the
// request once, for every later check. It enforces nothing.
func (s *Service) Identify(next http.Handler) http.Handler {
	return s.p.Sessions.Identify(s.lifetimes(), next)
}

// lifetimes are this configuration's session bounds.
func (s *Service) lifetimes() session.Lifetimes {
	return session.Lifetimes{MaxAge: s.maxAge, Idle: s.idle, OutageGrace: s.grace}
}

// startSession signs u in with provider: a new session, its cookie set,
// the sign-in counted (Process.Usage).
func (s *Service) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, u *store.User, provider string, opts ...func(*store.Session)) (*request.Session, error) {
	sess, err := s.p.Sessions.Start(ctx, w, r, u, provider, s.lifetimes(), opts...)
	if err == nil && s.p.Usage != nil {
		s.p.Usage.SignIn(request.From(r), provider)
	}
	return sess, err
}

// Holder reports whether the sign-in a WebSocket was opened with
// (request.User.SessionID) is still valid and, when it is, who holds it
// now: the user as a request would carry them, and the session (nil for a
// bearer token). The server asks it about every session that holds
// sockets, so a session that ends loses its sockets and a user whose
// groups changed has the sockets of the routes they lost closed.
// lastActive is use the socket saw (frames), so idle_timeout does not end
// a session in use. A WebSocket opened with a bearer token lives while the
// token (or, for an ID token, its user) stays valid (issue 12 #6: such
// sockets were closed within seconds as "session ended"). alive with a
// user who is not SignedIn means the user cannot be told now (the store
// is unreachable for a token; an ID token, whose groups only its provider
// knows): keep the socket.
func (s *Service) Holder(ctx context.Context, sessionID string, lastActive time.Time) (u request.User, sess *request.Session, alive bool) {
	if hash, ok := strings.CutPrefix(sessionID, tokenSessionPrefix); ok {
		u, err := s.p.tokenByHash(ctx, hash)
		if err != nil {
			return request.User{}, nil, errors.Is(err, errStoreDown) // a store blip closes no socket
		}
		return u, nil, true
	}
	if alive, ok := s.bearerAlive(ctx, sessionID); ok {
		return request.User{}, nil, alive
	}
	if !s.p.Sessions.Alive(ctx, sessionID, lastActive, s.lifetimes()) {
		return request.User{}, nil, false
	}
	u, sess, _ = s.p.Sessions.Peek(sessionID)
	return u, sess, true
}

// signInUnavailable is the answer to a sign-in moat cannot complete now,
// its store or counters unreachable or every hashing slot busy: 503, "we
// cannot sign you in right now", with Retry-After; err is logged.
func signInUnavailable(err error) *web.Problem {
	return web.StoreDown("auth.signin_unavailable", err)
}

// signedIn returns the user and the session Identify found for r; the
// session is nil when r carries none.
func signedIn(r *http.Request) (request.User, *request.Session) {
	info := request.From(r)
	return info.User, info.Session
}

func clientIP(info *request.Info) string {
	if info.ClientIP.IsValid() {
		return info.ClientIP.String()
	}
	return ""
}
