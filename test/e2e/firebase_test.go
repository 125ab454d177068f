package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/store"
)

// firebaseExport is a `firebase auth:export` file with the account of
// github.com/firebase/scrypt's README, whose password is "user1password"
// under that README's project hash parameters (firebaseHashFlags).
const firebaseExport = `{"users": [{
  "localId": "kYi4EvWQlQTKSfnJ3dRSP6IH3ed2",
  "email": "user1@test.com",
  "emailVerified": false,
  "passwordHash": "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ==",
  "salt": "42xEC+ixf3L2lw==",
  "displayName": "Test User 1",
  "createdAt": "1508893925000"
}]}`

var firebaseHashFlags = []string{"--format", "firebase",
	"--hash-key", "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==",
	"--salt-separator", "Bw==", "--rounds", "8", "--mem-cost", "14"}

// signInWithPassword signs in through moat's real login page with a cookie
// jar, as a browser without JavaScript would, and returns the client and
// where the login sent it.
func signInWithPassword(t *testing.T, m *Moat, email, password string) (*http.Client, *http.Response) {
	t.Helper()
	c := m.Client()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Jar = jar
	resp, err := c.Get(m.URL + "/_moat/login?return_to=%2F")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := csrfField.FindSubmatch(page)
	if tok == nil {
		t.Fatalf("the login page has no CSRF field:\n%s", page)
	}
	resp, err = c.PostForm(m.URL+"/_moat/login", url.Values{
		"csrf": {string(tok[1])}, "return_to": {"/"}, "email": {email}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return c, resp
}

// TestAnImportedFirebaseUserSignsInWithTheOriginalPassword imports a
// Firebase account with the real CLI, signs in through moat's login page
// with the password the account had in Firebase, and finds the stored hash
// rehashed to argon2id, which the next sign-in uses.
func TestAnImportedFirebaseUserSignsInWithTheOriginalPassword(t *testing.T) {
	t.Parallel()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-Moat-User-Email"))
	}))
	t.Cleanup(app.Close)
	m := startMoat(t, fmt.Sprintf(`backends:
  app: {url: %q}
routes:
  - {host: localhost, backend: app, login: [password], allow: ["group:customer-a"]}
`, app.URL))

	export := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(export, []byte(firebaseExport), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"users", "import", export, "--group", "customer-a", "-c", m.ConfigPath}, firebaseHashFlags...)
	out, err := exec.Command(moatBin, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "imported 1 user(s)") {
		t.Fatalf("moat users import: %v\n%s", err, out)
	}

	if _, resp := signInWithPassword(t, m, "user1@test.com", "user1password!"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong password: status %d, want the login page again with 401", resp.StatusCode)
	}
	c, resp := signInWithPassword(t, m, "user1@test.com", "user1password")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in with the Firebase password: %s to %q, want 303 to /", resp.Status, resp.Header.Get("Location"))
	}
	resp, err = c.Get(m.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello user1@test.com" {
		t.Fatalf("the app answered %s %q, want the signed-in user", resp.Status, body)
	}

	// The sign-in replaced Firebase's hash with argon2id.
	st, err := store.Open(t.Context(), filepath.Join(m.DataDir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.GetUserByEmail(t.Context(), "user1@test.com")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
		t.Errorf("after the first sign-in the stored hash is %.30q…, want argon2id", u.PasswordHash)
	}
	if _, resp := signInWithPassword(t, m, "user1@test.com", "user1password"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the second sign-in (argon2id): %s, want 303", resp.Status)
	}
}
