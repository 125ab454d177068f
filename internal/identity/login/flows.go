package login

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/identity/session"
	"github.com/moat-dev/moat/internal/store"
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
)

// Flows are the process's sign-ins with a provider: the cookie that
// carries each from its start to the callback, sealed with the instance
// key, and the redeeming of its state, once for the whole cluster (in the
// store: a callback cannot be replayed against another instance, nor after
// a reload or a restart; issue 11). One serves every configuration; create
// it with NewFlows. A redeemed sign-in's cookie stays, until the sign-in
// would have expired, holding only where it led (flow.Led): a callback the
// browser repeats while signed in goes there on any instance.
type Flows struct {
	key   *instancekey.Key
	spent store.Once
}

// NewFlows returns the Flows of a process with the instance key key,
// spending the states of its callbacks in spent (the store every instance
// shares).
func NewFlows(key *instancekey.Key, spent store.Once) *Flows {
	return &Flows{key: key, spent: spent}
}

// flow is what a flow cookie holds.
type flow struct {
	Provider string `json:"p"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"`
	// Led: the sign-in was redeemed; the cookie no longer holds its nonce
	// and verifier, only where it led.
	Led bool `json:"l,omitempty"`
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

// redeem spends state for every instance, until the sign-in would have
// expired (and a minute more, for the instances' clocks), and reports
// whether it was unspent. An error is the store's: the callback cannot be
// checked, and fails.
func (fs *Flows) redeem(ctx context.Context, state string, until time.Time) (bool, error) {
	return fs.spent.UseOnce(ctx, store.OnceOIDCState, state, until.Add(time.Minute))
}

// lead replaces the cookie of f, just redeemed, with one that says only
// where it led, for the rest of its lifetime.
func (fs *Flows) lead(w http.ResponseWriter, f *flow) error {
	led := flow{Provider: f.Provider, State: f.State, ReturnTo: f.ReturnTo, Expires: f.Expires, Led: true}
	v, err := fs.seal(led)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookieName(f.State), Value: v, Path: "/", MaxAge: max(1, int(time.Until(time.Unix(f.Expires, 0))/time.Second)),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return nil
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
	return ""
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
