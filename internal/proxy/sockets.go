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

	// ParkAfter is how long a direction of a socket waits for a frame
	// before it gives up its goroutine and waits in the poller; 0 means
	// DefaultParkAfter.
	ParkAfter time.Duration

	mu   sync.Mutex
	all  map[*wsConn]struct{}
	poll poller
}

// DefaultParkAfter is Sockets.ParkAfter's default. A Streamlit socket is
// idle between a person's interactions, and waking a parked direction costs
// a goroutine's start and an epoll call or two, nothing a person notices;
// a short wait keeps few goroutines alive at once, and so few stacks held
// for reuse, when many sockets open together (issue 13's 5,000).
const DefaultParkAfter = 100 * time.Millisecond

func (s *Sockets) parkAfter() time.Duration {
	if s.ParkAfter > 0 {
		return s.ParkAfter
	}
	return DefaultParkAfter
}

// Parked returns how many directions of open sockets wait in the poller
// without a goroutine (two per fully idle socket).
func (s *Sockets) Parked() int { return s.poll.parked() }

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

// Socket is an open WebSocket of a signed-in user, as Recheck shows it to
// its judge: who opened it, on which route, knowing what.
type Socket struct {
	// Session is the request.User.SessionID it was opened with (a
	// browser session's id hash, or a bearer token's id).
	Session string
	// User is the user's id.
	User string
	// Route is the name of the route it was opened on (config.Route.Name).
	Route string
	// Fingerprint is request.User.Fingerprint when it was opened: what
	// the app was told about the user.
	Fingerprint uint64
	// LastActive is the last time a frame moved on any socket of the
	// session.
	LastActive time.Time
}

// Recheck asks judge about the open sockets of signed-in users (of the
// user whose id is user, or of everyone when user is ""), and closes, as
// CloseAll does, each to which it answers a close code, with its reason.
// It returns how many it closed. judge runs outside the registry's lock,
// once per socket, and may ask the store: the server re-checks a user's
// sockets when who they are changes (a group, a disabled account, a
// revoked token, anywhere in the cluster) and every socket periodically,
// closing those whose route no longer admits the user and asking those
// whose app holds a stale identity to reconnect (issue 9; issue 14 item 1).
func (s *Sockets) Recheck(user string, judge func(Socket) (code int, reason string)) int {
	s.mu.Lock()
	conns := make([]*wsConn, 0, len(s.all))
	last := map[string]int64{}
	for c := range s.all {
		if c.sessionID == "" || user != "" && c.userID != user {
			continue
		}
		conns = append(conns, c)
		if t := c.lastActive.Load(); t > last[c.sessionID] {
			last[c.sessionID] = t
		}
	}
	s.mu.Unlock()
	type closing struct {
		c      *wsConn
		code   int
		reason string
	}
	var doomed []closing
	for _, c := range conns {
		code, reason := judge(Socket{Session: c.sessionID, User: c.userID, Route: c.route,
			Fingerprint: c.fingerprint, LastActive: time.Unix(0, last[c.sessionID])})
		if code != 0 {
			doomed = append(doomed, closing{c, code, reason})
		}
	}
	var wg sync.WaitGroup
	for _, d := range doomed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.c.closeWith(d.code, d.reason)
		}()
	}
	wg.Wait()
	return len(doomed)
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
