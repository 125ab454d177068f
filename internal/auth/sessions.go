package auth

import (
	"context"
	"net/http"
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

// Alive reports whether the sign-in a WebSocket was opened with is still
// valid; the server asks it about every session that holds sockets, so a
// session that ends loses its sockets. A store it cannot reach ends none:
// it reports false only for a session that really ended (revoked, expired,
// idle, its user disabled). lastActive is use the socket saw
// (frames), so idle_timeout does not end a session in use. A WebSocket
// opened with a bearer token lives while the token (or, for an ID token,
// its user) stays valid (issue 12 #6: such sockets were closed within
// seconds as "session ended").
func (s *Service) Alive(ctx context.Context, sessionIDHash string, lastActive time.Time) bool {
	if alive, ok := s.bearerAlive(ctx, sessionIDHash); ok {
		return alive
	}
	return s.p.Sessions.Alive(ctx, sessionIDHash, lastActive, s.lifetimes())
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
