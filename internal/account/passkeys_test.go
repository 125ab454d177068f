package account

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/moat-dev/moat/internal/auth/passkey/passkeytest"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
)

// newPasskeyHarness is the harness with its route on localhost (a passkey needs
// a host name, not 127.0.0.1); requests name it in Host.
func newPasskeyHarness(t *testing.T, tweak func(*config.Config)) *harness {
	t.Helper()
	return newHarnessWith(t, func(c *config.Config) {
		c.Routes[0].Host = "localhost"
		if tweak != nil {
			tweak(c)
		}
	})
}

func (h *harness) host() string {
	return "localhost:" + h.srv.URL[strings.LastIndex(h.srv.URL, ":")+1:]
}

func (h *harness) origin() string { return "https://" + h.host() }

// page GETs a page as localhost and returns its body and CSRF token.
func (h *harness) page(c *http.Client, path string) (*http.Response, string, string) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
	req.Host = h.host()
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	tok := ""
	if m := csrfRE.FindSubmatch(b); m != nil {
		tok = string(m[1])
	} else if m := dataCSRF.FindSubmatch(b); m != nil {
		tok = string(m[1]) // a page with passkey buttons only
	}
	return resp, string(b), tok
}

// form POSTs a form as localhost.
func (h *harness) form(c *http.Client, path string, v url.Values) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.srv.URL+path, strings.NewReader(v.Encode()))
	req.Host = h.host()
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// call POSTs a passkey step as the page's script does (token "" sends
// none).
func (h *harness) call(c *http.Client, path, token string, in any) (int, map[string]json.RawMessage) {
	h.t.Helper()
	raw, _ := json.Marshal(in)
	req, _ := http.NewRequest("POST", h.srv.URL+path, bytes.NewReader(raw))
	req.Host = h.host()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", h.origin())
	req.Header.Set("Sec-Fetch-Mode", "cors")
	if token != "" {
		req.Header.Set("X-CSRF-Token", token)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]json.RawMessage{}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func (h *harness) loginAt(e string) *http.Client {
	h.t.Helper()
	c := h.browser()
	_, _, tok := h.page(c, "/_moat/login")
	if resp := h.form(c, "/_moat/login", url.Values{"csrf": {tok}, "email": {e}, "password": {pw}, "return_to": {"/app/"}}); resp.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("login %s: %d", e, resp.StatusCode)
	}
	return c
}

func str(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// device is a person's authenticator (a software one).
type device struct {
	auth virtualwebauthn.Authenticator
	cred virtualwebauthn.Credential
	rp   virtualwebauthn.RelyingParty
}

// addPasskey runs the account page's add ceremony and returns the device
// holding the new passkey; it fails the test unless status comes back.
func (h *harness) addPasskey(c *http.Client, token, name string, status int) (*device, map[string]json.RawMessage) {
	h.t.Helper()
	code, begun := h.call(c, "/_moat/account/passkeys/add/begin", token, struct{}{})
	if code != http.StatusOK {
		if code == status {
			return nil, begun
		}
		h.t.Fatalf("add/begin: %d %s", code, begun["message"])
	}
	opts, err := virtualwebauthn.ParseAttestationOptions(string(begun["options"]))
	if err != nil {
		h.t.Fatal(err)
	}
	d := &device{auth: virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(opts.UserID)}),
		cred: passkeytest.Credential(), rp: virtualwebauthn.RelyingParty{ID: "localhost", Name: "localhost", Origin: h.origin()}}
	made := virtualwebauthn.CreateAttestationResponse(d.rp, d.auth, d.cred, *opts)
	code, out := h.call(c, "/_moat/account/passkeys/add/finish", token, map[string]any{"state": str(begun["state"]), "credential": json.RawMessage(made), "name": name})
	if code != status {
		h.t.Fatalf("add/finish: %d %s, want %d", code, out["message"], status)
	}
	return d, out
}

// prove runs an assertion ceremony at path (…/begin, …/finish) with d.
func (h *harness) prove(c *http.Client, path, token string, d *device) (int, map[string]json.RawMessage) {
	h.t.Helper()
	code, begun := h.call(c, path+"begin", token, struct{}{})
	if code != http.StatusOK {
		return code, begun
	}
	o, err := virtualwebauthn.ParseAssertionOptions(string(begun["options"]))
	if err != nil {
		h.t.Fatal(err)
	}
	d.cred.Counter++
	return h.call(c, path+"finish", token, map[string]any{"state": str(begun["state"]), "credential": json.RawMessage(virtualwebauthn.CreateAssertionResponse(d.rp, d.auth, d.cred, *o))})
}

var dataCSRF = regexp.MustCompile(`data-csrf="([^"]+)"`)

var passkeyRowRE = regexp.MustCompile(`action="/_moat/account/passkeys/([0-9a-f]{32})/remove"`)

func TestAPasskeyIsAddedListedAndRemovedOnTheAccountPage(t *testing.T) {
	h := newPasskeyHarness(t, nil)
	c := h.loginAt(email)
	resp, body, tok := h.page(c, "/_moat/account")
	want(t, resp, body, 200, "No passkeys yet.", `id="passkey-add"`, "passkeys added here work on localhost", `value="Go-http-client`)
	if !strings.Contains(body, `<script src="/_moat/static/passkey.js" defer></script>`) || strings.Contains(body, "<script>") {
		t.Error("the page does not load passkey.js as a file, or has inline script")
	}
	_, out := h.addPasskey(c, tok, "Laptop", http.StatusOK)
	if got := str(out["redirect"]); got != "/_moat/account?done=passkey_added" {
		t.Errorf("after adding, the page goes to %q", got)
	}
	if len(h.changed) != 1 {
		t.Errorf("the session was not marked as past its second factor (changed: %v)", h.changed)
	}
	resp, body, tok = h.page(c, "/_moat/account?done=passkey_added")
	want(t, resp, body, 200, "Passkey added.", "<td>Laptop</td><td>localhost</td>", "your passkeys are your second factor")
	m := passkeyRowRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no remove button")
	}
	if resp := h.form(c, "/_moat/account/passkeys/"+m[1]+"/remove", url.Values{"csrf": {tok}}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/_moat/account?done=passkey_removed" {
		t.Fatalf("remove: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if list, _ := h.st.ListPasskeys(context.Background(), h.user.ID); len(list) != 0 {
		t.Errorf("%d passkeys left after removing the only one", len(list))
	}
	for _, action := range []string{"passkey.add", "passkey.remove"} {
		if ev, _ := h.st.ListAudit(context.Background(), store.AuditFilter{Action: action}); len(ev) != 1 || ev[0].Subject != email {
			t.Errorf("%s audit events: %+v", action, ev)
		}
	}
}

func TestAddingAPasskeyNeedsTheTokenARecentSignInAndThePassedSecondFactor(t *testing.T) {
	t.Run("without the CSRF token", func(t *testing.T) {
		h := newPasskeyHarness(t, nil)
		c := h.loginAt(email)
		if code, out := h.call(c, "/_moat/account/passkeys/add/begin", "", struct{}{}); code != http.StatusForbidden || str(out["error"]) != "auth.csrf" {
			t.Errorf("begin without the token: %d %s", code, out["error"])
		}
	})
	t.Run("with a sign-in older than admin_reauth", func(t *testing.T) {
		h := newPasskeyHarness(t, func(c *config.Config) { c.Identity.AdminReauth = config.Duration(time.Nanosecond) })
		c := h.loginAt(email)
		resp, body, tok := h.page(c, "/_moat/account")
		want(t, resp, body, 200, "Sign in again to add a passkey")
		if _, out := h.addPasskey(c, tok, "Laptop", http.StatusUnauthorized); str(out["error"]) != "passkey.reauth" {
			t.Errorf("error %s, want passkey.reauth", out["error"])
		}
	})
	t.Run("from a session that has not passed the user's second factor", func(t *testing.T) {
		h := newPasskeyHarness(t, nil)
		c := h.loginAt(email)
		before := h.loginAt(email) // signed in before the first passkey
		_, _, tok := h.page(c, "/_moat/account")
		d, _ := h.addPasskey(c, tok, "Laptop", http.StatusOK)
		resp, body, tok2 := h.page(before, "/_moat/account")
		want(t, resp, body, 200, "first confirm this sign-in")
		if strings.Contains(body, `id="passkey-add"`) {
			t.Error("an unverified session is offered to add a passkey")
		}
		if _, out := h.addPasskey(before, tok2, "Phone", http.StatusForbidden); str(out["error"]) != "passkey.verify_first" {
			t.Errorf("error %s, want passkey.verify_first", out["error"])
		}
		id := passkeyRowRE.FindStringSubmatch(body)[1]
		if resp := h.form(before, "/_moat/account/passkeys/"+id+"/remove", url.Values{"csrf": {tok2}}); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/account/mfa") {
			t.Fatalf("removal from an unverified session: %d to %s, want the second-factor page", resp.StatusCode, resp.Header.Get("Location"))
		}
		// The second-factor page offers the passkey made here; proving it
		// marks the session, which may then remove it.
		resp, body, tok2 = h.page(before, "/_moat/account/mfa?return_to=/_moat/account")
		want(t, resp, body, 200, `id="passkey-verify"`, "Use a passkey you made for this site")
		if strings.Contains(body, "totp-secret") {
			t.Error("the page starts an authenticator-app enrolment for a user who must verify a passkey")
		}
		if code, out := h.prove(before, "/_moat/account/passkeys/verify/", tok2, d); code != http.StatusOK || str(out["redirect"]) != "/_moat/account?done=mfa_verified" {
			t.Fatalf("verify: %d %s", code, out["message"])
		}
		if resp := h.form(before, "/_moat/account/passkeys/"+id+"/remove", url.Values{"csrf": {tok2}}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/_moat/account?done=passkey_removed" {
			t.Fatalf("removal after verifying: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("someone else's passkey", func(t *testing.T) {
		h := newPasskeyHarness(t, nil)
		bob := h.addUser("bob@example.com", nil)
		p := &store.Passkey{UserID: bob.ID, CredentialID: "bobs", RPID: "localhost", Name: "Bob's", Record: []byte("sealed")}
		if err := h.st.AddPasskey(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		c := h.loginAt(email)
		_, _, tok := h.page(c, "/_moat/account")
		if resp := h.form(c, "/_moat/account/passkeys/"+p.ID+"/remove", url.Values{"csrf": {tok}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("removing bob's passkey: %d, want 404", resp.StatusCode)
		}
	})
}

func TestPasskeysNeedAHostName(t *testing.T) {
	h := newHarness(t) // reached as 127.0.0.1
	c := h.login(email, pw)
	resp, body := h.do(c, "GET", "/_moat/login?reauth=1", nil)
	want(t, resp, body, 200, `id="email"`)
	if strings.Contains(body, "passkey-signin") {
		t.Error("the login page on an address offers a passkey")
	}
	tok := h.csrf(c, "/_moat/account")
	req, _ := http.NewRequest("POST", h.srv.URL+"/_moat/account/passkeys/add/begin", strings.NewReader("{}"))
	req.Header.Set("X-CSRF-Token", tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusBadRequest || out.Error != "passkey.bad_host" {
		t.Errorf("adding a passkey on 127.0.0.1: %d %s, want 400 passkey.bad_host", resp.StatusCode, out.Error)
	}
}

// A user whose only passkey is for another host still gets the second step
// (fail closed), which says where the passkey works.
func TestASecondStepIsAskedForEvenWhenThePasskeyIsForAnotherHost(t *testing.T) {
	h := newPasskeyHarness(t, nil)
	if err := h.st.AddPasskey(context.Background(), &store.Passkey{UserID: h.user.ID, CredentialID: "elsewhere", RPID: "reports.example.com", Name: "Key", Record: []byte("sealed")}); err != nil {
		t.Fatal(err)
	}
	c := h.browser()
	_, _, tok := h.page(c, "/_moat/login")
	resp := h.form(c, "/_moat/login", url.Values{"csrf": {tok}, "email": {email}, "password": {pw}, "return_to": {"/app/"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/mfa") {
		t.Fatalf("password of a user with a passkey elsewhere: %d to %s, want the second step", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body, _ := h.page(c, resp.Header.Get("Location"))
	want(t, resp, body, 200, "work only on the sites they were made on (reports.example.com)")
	if strings.Contains(body, `id="code"`) || strings.Contains(body, "passkey-second-factor") {
		t.Error("the second step offers a factor the user does not have here")
	}
	if _, body, _ := h.page(c, "/app/"); strings.Contains(body, "dashboard") {
		t.Error("the dashboard opened without a second factor")
	}
}

// The login's second step with a passkey, and the passkey alone, over
// HTTP: the sign-in's endpoints need the page's token and sign in with the
// session marked as past its second factor.
func TestThePasskeySignInEndpoints(t *testing.T) {
	h := newPasskeyHarness(t, func(c *config.Config) { c.Routes[0].MFA = "required" })
	c := h.loginAt(email)
	_, _, tok := h.page(c, "/_moat/account")
	d, _ := h.addPasskey(c, tok, "Laptop", http.StatusOK)

	second := h.browser()
	_, _, tok = h.page(second, "/_moat/login")
	resp := h.form(second, "/_moat/login", url.Values{"csrf": {tok}, "email": {email}, "password": {pw}, "return_to": {"/app/"}})
	resp, body, tok := h.page(second, resp.Header.Get("Location"))
	want(t, resp, body, 200, `id="passkey-second-factor"`, "Use your passkey to finish signing in")
	if code, out := h.prove(second, "/_moat/passkey/second-factor/", "", d); code != http.StatusForbidden {
		t.Errorf("second step without the token: %d %s", code, out["error"])
	}
	if code, out := h.prove(second, "/_moat/passkey/second-factor/", tok, d); code != http.StatusOK || str(out["redirect"]) != "/" {
		t.Fatalf("second step: %d %s", code, out["message"])
	}
	if resp, body, _ := h.page(second, "/app/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the route that requires a second factor after password + passkey: %d %.200s", resp.StatusCode, body)
	}

	alone := h.browser()
	_, body, tok = h.page(alone, "/_moat/login?return_to=/app/")
	if !strings.Contains(body, `id="passkey-signin"`) || !strings.Contains(body, `autocomplete="username webauthn"`) {
		t.Fatal("the login page offers no passkey")
	}
	if code, out := h.prove(alone, "/_moat/passkey/second-factor/", tok, d); code != http.StatusUnauthorized || str(out["error"]) != "passkey.restart" {
		t.Errorf("a second step without a password first: %d %s", code, out["error"])
	}
	if code, out := h.prove(alone, "/_moat/passkey/sign-in/", tok, d); code != http.StatusOK || str(out["redirect"]) != "/" {
		t.Fatalf("the passkey alone: %d %s", code, out["message"])
	}
	list, _ := h.st.ListSessions(context.Background(), h.user.ID)
	for _, s := range list {
		if !s.MFA || s.Provider != "password" {
			t.Errorf("session %+v: want every passkey sign-in marked as past its second factor", s)
		}
	}
}
