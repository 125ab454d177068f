package login

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/identity/session"
)

// OIDCCookie starts the name of the cookies that carry a sign-in with a
// provider from its start to the callback: one cookie per sign-in, named
// after its state (flowCookieName), so two tabs signing in at once do not
// overwrite each other's (issue 12 #12). Each is sealed with the instance
// key, bound to this browser (the state sent to the provider must match the
// one inside), single use and valid for flowLifetime; a browser holds at
// most maxFlows.
const OIDCCookie = "__Host-moat-oidc-"

// Limits of the sign-ins with a provider.
const (
	// maxFlows bounds the sign-ins one browser may have under way at once.
	maxFlows      = 5
	flowLifetime  = 10 * time.Minute
	maxFlowCookie = 4096
	maxUsedStates = 100000
)

// Flows are the process's sign-ins with a provider: the cookie that
// carries each from its start to the callback, sealed with the instance
// key, and the states already redeemed, so a callback cannot be replayed,
// even across a reload (issue 11: a reload used to forget them). One
// serves every configuration; create it with NewFlows.
type Flows struct {
	key  *instancekey.Key
	mu   sync.Mutex
	used map[string]usedFlow // state -> the sign-in it finished
}

// NewFlows returns the Flows of a process with the instance key key.
func NewFlows(key *instancekey.Key) *Flows {
	return &Flows{key: key, used: map[string]usedFlow{}}
}

// usedFlow is a redeemed sign-in: until when its state matters, and where
// it led (for a repeated callback in a signed-in browser).
type usedFlow struct {
	until    time.Time
	returnTo string
}

// flow is what a flow cookie holds.
type flow struct {
	Provider string `json:"p"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"`
}

var flowAAD = []byte("moat-oidc-flow")

// flowCookieName is the name of the cookie of the sign-in with state.
func flowCookieName(state string) string {
	sum := sha256.Sum256([]byte(state))
	return OIDCCookie + hex.EncodeToString(sum[:8])
}

func (fs *Flows) seal(f flow) (string, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	ct, err := fs.key.Seal(b, flowAAD)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(ct), nil
}

func (fs *Flows) open(v string) (*flow, error) {
	if v == "" || len(v) > maxFlowCookie {
		return nil, errors.New("no sign-in in progress in this browser")
	}
	ct, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, errors.New("sign-in cookie is malformed")
	}
	b, err := fs.key.Open(ct, flowAAD)
	if err != nil {
		return nil, errors.New("sign-in cookie does not open")
	}
	var f flow
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, errors.New("sign-in cookie is malformed")
	}
	if time.Now().Unix() > f.Expires {
		return nil, errors.New("sign-in took longer than 10 minutes")
	}
	return &f, nil
}

// redeem records state as redeemed and reports whether it was fresh.
func (fs *Flows) redeem(state string, until time.Time, returnTo string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if _, seen := fs.used[state]; seen {
		return false
	}
	if len(fs.used) >= maxUsedStates {
		now := time.Now()
		for k, u := range fs.used {
			if now.After(u.until) {
				delete(fs.used, k)
			}
		}
		if len(fs.used) >= maxUsedStates {
			return false // fail closed under a flood
		}
	}
	fs.used[state] = usedFlow{until: until, returnTo: returnTo}
	return true
}

// returnTo is where the sign-in with state led, if it was redeemed.
func (fs *Flows) returnTo(state string) (string, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	u, ok := fs.used[state]
	return u.returnTo, ok
}

// CallbackReturnTo is where the sign-in a callback request finishes leads
// (its return_to), or "" when r names none: the server routes the callback
// under the security policy of that route (issue 12 #1).
func (fs *Flows) CallbackReturnTo(r *http.Request) string {
	state := r.URL.Query().Get("state")
	if state == "" {
		return ""
	}
	if f, err := fs.open(session.CookieValue(r, flowCookieName(state))); err == nil && f.State == state {
		return f.ReturnTo
	}
	to, _ := fs.returnTo(state)
	return to
}

// dropOld makes room for one more sign-in in r's browser: past maxFlows -
// 1 flow cookies, the ones closest to expiry (or that do not open) are
// deleted.
func (fs *Flows) dropOld(w http.ResponseWriter, r *http.Request) {
	type held struct {
		name    string
		expires int64
	}
	var flows []held
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, OIDCCookie) {
			continue
		}
		h := held{name: c.Name}
		if f, err := fs.open(c.Value); err == nil {
			h.expires = f.Expires
		}
		flows = append(flows, h)
	}
	if len(flows) < maxFlows {
		return
	}
	slices.SortFunc(flows, func(a, b held) int { return cmp.Compare(a.expires, b.expires) })
	for _, h := range flows[:len(flows)-maxFlows+1] {
		clearFlowCookie(w, h.name)
	}
}

func setFlowCookie(w http.ResponseWriter, state, value string) {
	http.SetCookie(w, &http.Cookie{Name: flowCookieName(state), Value: value, Path: "/", MaxAge: int(flowLifetime / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func clearFlowCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}
