package proxy

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"

	"github.com/moat-dev/moat/internal/request"
)

// AffinityCookie keeps a visitor who is not signed in on one replica of a
// backend that has several. It holds a random id, which picks the replica
// as a signed-in session's id does; it never names the replica. Like every
// moat cookie it is stripped before the request reaches the app.
const AffinityCookie = "__Host-moat-affinity"

// affinityIDBytes is the size of a new affinity id (22 base64url
// characters); ids of 16 to 64 characters are accepted from clients.
const affinityIDBytes = 16

// replica is one URL of a backend: the backend itself when it has one, or
// one of the app's copies listed under urls.
type replica struct {
	target *url.URL
	// label is the URL as configured: the replica label of
	// moat_backend_up and the replica key of logs.
	label string
	// seed is label's hash, mixed into each user's score.
	seed    uint64
	healthy atomic.Bool
	proxy   *httputil.ReverseProxy
}

// pick chooses the replica for r. A backend with one URL has nothing to
// choose. Otherwise the signed-in session's id, or else the affinity
// cookie, keys a rendezvous hash over the healthy replicas, so the HTTP
// requests and WebSockets of one user reach one replica on every moat
// instance, users spread evenly, and a replica added or gone moves only
// its own share of users. When the request has neither, pick makes an
// affinity id and returns the cookie to set.
func (b *Backend) pick(r *http.Request, info *request.Info) (*replica, *http.Cookie) {
	if len(b.replicas) == 1 {
		return b.replicas[0], nil
	}
	key := info.User.SessionID
	var set *http.Cookie
	if key == "" {
		key = affinityID(r)
		if key == "" {
			var raw [affinityIDBytes]byte
			_, _ = rand.Read(raw[:])
			key = base64.RawURLEncoding.EncodeToString(raw[:])
			// Secure and host-only like moat's other cookies (a
			// sibling subdomain cannot set a __Host- cookie); no
			// expiry: a browser session is what stickiness is for.
			set = &http.Cookie{Name: AffinityCookie, Value: key, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
		}
	}
	return b.rendezvous(key), set
}

// rendezvous returns the replica with the highest score for key among the
// healthy ones, or among all when none is healthy (then the app's own
// answer, or moat's 502, is the most useful reply).
func (b *Backend) rendezvous(key string) *replica {
	h := fnv64a(key)
	anyHealthy := false
	for _, rp := range b.replicas {
		if rp.healthy.Load() {
			anyHealthy = true
			break
		}
	}
	var best *replica
	var bestScore uint64
	for _, rp := range b.replicas {
		if anyHealthy && !rp.healthy.Load() {
			continue
		}
		if s := mix64(h ^ rp.seed); best == nil || s > bestScore {
			best, bestScore = rp, s
		}
	}
	return best
}

// affinityID returns the request's affinity id, or "" when it has none
// or one that is not 16 to 64 base64url characters.
func affinityID(r *http.Request) string {
	c, err := r.Cookie(AffinityCookie)
	if err != nil || len(c.Value) < 16 || len(c.Value) > 64 {
		return ""
	}
	for i := 0; i < len(c.Value); i++ {
		switch ch := c.Value[i]; {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9', ch == '-', ch == '_':
		default:
			return ""
		}
	}
	return c.Value
}

// fnv64a is FNV-1a: stable across processes (so every moat instance picks
// the same replica for a user, which a seeded hash such as maphash would
// not) and computed without allocating, unlike hash/fnv's interface.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is splitmix64's finalizer: it spreads the combined hash of a user
// and a replica over all 64 bits, so each replica wins for an even share
// of users.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
