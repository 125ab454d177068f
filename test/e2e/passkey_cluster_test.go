package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/moat-dev/moat/internal/auth/passkey/passkeytest"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testnet"
)

// browserOf is a browser's cookies and origin talking to one of several
// moat instances behind one name, as behind a load balancer: every request
// names the first instance's origin, and goes to the instance chosen.
type browserOf struct {
	t      testing.TB
	origin string // https://localhost:PORT of the first instance
	jar    http.CookieJar
	csrf   string
	pool   *x509.CertPool
}

func newBrowserOf(t testing.TB, origin string, instances ...*Moat) *browserOf {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, m := range instances {
		pool.AddCert(m.Cert)
	}
	return &browserOf{t: t, origin: origin, jar: jar, pool: pool}
}

// on returns a client whose requests reach m.
func (b *browserOf) on(m *Moat) *http.Client {
	return testnet.Pin{Addr: m.HTTPSAddr, TLS: &tls.Config{RootCAs: b.pool, ServerName: "localhost"}, Jar: b.jar, Timeout: 30 * time.Second}.Client()
}

// do sends a request to m and returns the status and body.
func (b *browserOf) do(m *Moat, method, path string, body io.Reader, header http.Header) (int, string, http.Header) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.origin+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.on(m).Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if mm := csrfField.FindSubmatch(raw); mm != nil {
		b.csrf = string(mm[1])
	}
	return resp.StatusCode, string(raw), resp.Header
}

// signInWithPassword signs in on m; it returns where moat sent the browser.
func (b *browserOf) signInWithPassword(m *Moat, email, password string) string {
	b.t.Helper()
	b.do(m, "GET", "/_moat/login?return_to=%2F", nil, nil)
	form := url.Values{"email": {email}, "password": {password}, "csrf": {b.csrf}, "return_to": {"/"}}
	status, body, h := b.do(m, "POST", "/_moat/login?return_to=%2F", strings.NewReader(form.Encode()), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	if status != http.StatusSeeOther {
		b.t.Fatalf("password sign-in: %d %s", status, body)
	}
	return h.Get("Location")
}

// ceremony posts a passkey step to m as the page's script does.
func (b *browserOf) ceremony(m *Moat, path string, in any) (int, map[string]json.RawMessage) {
	b.t.Helper()
	raw, _ := json.Marshal(in)
	status, body, _ := b.do(m, "POST", path, bytes.NewReader(raw), http.Header{
		"Content-Type": {"application/json"}, "X-Csrf-Token": {b.csrf}, "Origin": {b.origin}})
	out := map[string]json.RawMessage{}
	_ = json.Unmarshal([]byte(body), &out)
	return status, out
}

func jsonString(t testing.TB, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("not a JSON string: %s", raw)
	}
	return s
}

// TestAPasskeyCeremonyBegunOnOneInstanceFinishesOnAnother: two moat
// processes on one PostgreSQL, with one instance key, behind one name. A
// passkey added, a sign-in with the passkey alone and a second step are
// each begun on one instance and finished on the other; the same answer
// then fails on the first, and a cloned authenticator's stale counter is
// refused by the instance that did not see the last use.
func TestAPasskeyCeremonyBegunOnOneInstanceFinishesOnAnother(t *testing.T) {
	dsn := storetest.Postgres(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	t.Setenv("MOAT_SECRET_KEY", base64.StdEncoding.EncodeToString(key))
	cfg := fmt.Sprintf("store: %q\n", dsn) + fmt.Sprintf(`backends:
  app: {url: %q}
routes:
  - {host: localhost, backend: app, login: [password], allow: ["group:staff"]}
`, whoAmI(t))
	a := startMoat(t, cfg)
	b := startMoat(t, cfg)
	const email, password = "aiko@example.com", "a long passphrase for two instances"
	addUser(t, a, email, password, "staff")
	rp := virtualwebauthn.RelyingParty{ID: "localhost", Name: "localhost", Origin: a.URL}

	// Add a passkey: begun on A, finished on B.
	alice := newBrowserOf(t, a.URL, a, b)
	alice.signInWithPassword(a, email, password)
	alice.do(a, "GET", "/_moat/account", nil, nil)
	status, begun := alice.ceremony(a, "/_moat/account/passkeys/add/begin", struct{}{})
	if status != http.StatusOK {
		t.Fatalf("add/begin on A: %d %s", status, begun["message"])
	}
	opts, err := virtualwebauthn.ParseAttestationOptions(string(begun["options"]))
	if err != nil {
		t.Fatal(err)
	}
	user := virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{UserHandle: []byte(opts.UserID)})
	cred := passkeytest.Credential()
	made := virtualwebauthn.CreateAttestationResponse(rp, user, cred, *opts)
	if status, out := alice.ceremony(b, "/_moat/account/passkeys/add/finish", map[string]any{"state": jsonString(t, begun["state"]), "credential": json.RawMessage(made), "name": "Go key"}); status != http.StatusOK {
		t.Fatalf("add/finish on B of a ceremony begun on A: %d %s", status, out["message"])
	}

	// begin begins an assertion at path+"begin" on one instance and
	// returns the authenticator's answer (credential c) for path+"finish".
	begin := func(cl *browserOf, on *Moat, path string, c virtualwebauthn.Credential) json.RawMessage {
		t.Helper()
		status, begun := cl.ceremony(on, path+"begin", struct{}{})
		if status != http.StatusOK {
			t.Fatalf("%sbegin: %d %s", path, status, begun["message"])
		}
		o, err := virtualwebauthn.ParseAssertionOptions(string(begun["options"]))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(map[string]any{"state": jsonString(t, begun["state"]), "credential": json.RawMessage(virtualwebauthn.CreateAssertionResponse(rp, user, c, *o))})
		return raw
	}
	finish := func(cl *browserOf, on *Moat, path string, answer json.RawMessage) (int, map[string]json.RawMessage) {
		t.Helper()
		return cl.ceremony(on, path+"finish", answer)
	}

	// The passkey alone: begun on B, finished on A; the session works on B.
	bob := newBrowserOf(t, a.URL, a, b)
	bob.do(b, "GET", "/_moat/login?return_to=%2F", nil, nil)
	cred.Counter++
	answer := begin(bob, b, "/_moat/passkey/sign-in/", cred)
	if status, out := finish(bob, a, "/_moat/passkey/sign-in/", answer); status != http.StatusOK || jsonString(t, out["redirect"]) != "/" {
		t.Fatalf("sign-in begun on B, finished on A: %d %s", status, out["message"])
	}
	if status, body, _ := bob.do(b, "GET", "/", nil, nil); status != http.StatusOK || !strings.Contains(body, "Signed in as "+email) {
		t.Fatalf("the session on B: %d %s", status, body)
	}
	// The same answer again, on B: the challenge was used on A.
	if status, out := finish(bob, b, "/_moat/passkey/sign-in/", answer); status != http.StatusUnauthorized || jsonString(t, out["error"]) != "passkey.expired" {
		t.Fatalf("the answer replayed on B: %d %s, want 401 passkey.expired", status, out["error"])
	}

	// The second step: password on A, passkey begun on A, finished on B.
	carol := newBrowserOf(t, a.URL, a, b)
	if next := carol.signInWithPassword(a, email, password); !strings.HasPrefix(next, "/_moat/mfa") {
		t.Fatalf("a user with a passkey was sent to %s after the password, want the second step", next)
	}
	carol.do(a, "GET", "/_moat/mfa?return_to=%2F", nil, nil)
	clone := cred // copied off the device before this use
	cred.Counter++
	answer = begin(carol, a, "/_moat/passkey/second-factor/", cred)
	if status, out := finish(carol, b, "/_moat/passkey/second-factor/", answer); status != http.StatusOK {
		t.Fatalf("second step begun on A, finished on B: %d %s", status, out["message"])
	}
	if status, body, _ := carol.do(a, "GET", "/", nil, nil); status != http.StatusOK || !strings.Contains(body, email) {
		t.Fatalf("after the second step: %d %s", status, body)
	}

	// The copy, one use behind, is refused on A, which did not see the use.
	dave := newBrowserOf(t, a.URL, a, b)
	dave.do(a, "GET", "/_moat/login?return_to=%2F", nil, nil)
	clone.Counter++
	answer = begin(dave, a, "/_moat/passkey/sign-in/", clone)
	if status, out := finish(dave, a, "/_moat/passkey/sign-in/", answer); status != http.StatusForbidden || jsonString(t, out["error"]) != "passkey.cloned" {
		t.Fatalf("a cloned authenticator: %d %s, want 403 passkey.cloned", status, out["error"])
	}
	b.WaitLog(t, 5*time.Second, func(r map[string]any) bool {
		return r["action"] == "passkey.add" && r["user"] == email
	})
	a.WaitLog(t, 5*time.Second, func(r map[string]any) bool {
		return r["action"] == "passkey.clone_suspected" && r["user"] == email
	})
}
