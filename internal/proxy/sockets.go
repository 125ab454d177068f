package proxy

import (
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/usage"
)

// Sockets is the registry of open proxied WebSockets. One registry is
// shared by every Backend and kept across configuration reloads, so that
// shutdown and sign-out reach every socket. The zero value is ready to use.
type Sockets struct {
	// Usage, when set, follows every socket of a signed-in user: opened,
	// each message the browser sends, closed (internal/usage).
	Usage usage.Recorder

	mu  sync.Mutex
	all map[*wsConn]struct{}
}

// NewSockets returns an empty registry.
func NewSockets() *Sockets { return &Sockets{} }

func (s *Sockets) add(c *wsConn) {
	s.mu.Lock()
	if s.all == nil {
		s.all = make(map[*wsConn]struct{})
	}
	s.all[c] = struct{}{}
	s.mu.Unlock()
}

// openUsage starts following a socket of info's user, when usage is
// counted.
func (s *Sockets) openUsage(info *request.Info) *usage.Socket {
	if s.Usage == nil {
		return nil
	}
	return s.Usage.OpenSocket(info)
}

func (s *Sockets) remove(c *wsConn) {
	s.mu.Lock()
	delete(s.all, c)
	s.mu.Unlock()
}

// Count returns the number of open proxied WebSockets.
func (s *Sockets) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all)
}

// CloseAll sends a Close frame with code and reason (1001 "going away" on
// shutdown) to both ends of every open socket, each at a frame boundary,
// and returns once every Close frame is written or abandoned (at most about
// two seconds). The connections are torn down when both peers answer, or
// shortly after.
func (s *Sockets) CloseAll(code int, reason string) {
	s.closeMatching(func(*wsConn) bool { return true }, code, reason)
}

// CloseSession closes, as CloseAll does, the sockets opened by the
// sign-in session sessionID (request.User.SessionID when the socket was
// opened) and returns how many it closed. An empty sessionID matches
// nothing: anonymous sockets are never closed by it.
func (s *Sockets) CloseSession(sessionID string, code int, reason string) int {
	if sessionID == "" {
		return 0
	}
	return s.closeMatching(func(c *wsConn) bool { return c.sessionID == sessionID }, code, reason)
}

// Sessions returns the sign-in sessions that hold open sockets, each with
// the last time a frame moved on any of its sockets. The server checks
// these sessions are still valid (and keeps them from idling out while
// their sockets are in use).
func (s *Sockets) Sessions() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]time.Time{}
	for c := range s.all {
		if c.sessionID == "" {
			continue
		}
		if t := time.Unix(0, c.lastActive.Load()); t.After(m[c.sessionID]) {
			m[c.sessionID] = t
		}
	}
	return m
}

func (s *Sockets) closeMatching(match func(*wsConn) bool, code int, reason string) int {
	s.mu.Lock()
	var conns []*wsConn
	for c := range s.all {
		if match(c) {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.closeWith(code, reason)
		}()
	}
	wg.Wait()
	return len(conns)
}
