package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/request"
)

// Identify finds the request's session (session.Sessions.Identify, under
// this configuration's lifetimes): the user and the session go on the
// request once, for every later check. It enforces nothing.
func (s *Service) Identify(next http.Handler) http.Handler {
	return s.p.Sessions.Identify(s.lifetimes, next)
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
	if !s.p.Sessions.Alive(ctx, sessionID, lastActive, s.lifetimes) {
		return request.User{}, nil, false
	}
	u, sess, _ = s.p.Sessions.Peek(sessionID)
	return u, sess, true
}

func clientIP(info *request.Info) string {
	if info.ClientIP.IsValid() {
		return info.ClientIP.String()
	}
	return ""
}
