package device

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// browser carries the cookies a Jar set, as a browser would.
type browser struct{ cookie string }

func (b *browser) request() *http.Request {
	r := httptest.NewRequest("POST", "https://dash.example.com/_moat/login", nil)
	if b.cookie != "" {
		r.Header.Set("Cookie", Cookie+"="+b.cookie)
	}
	return r
}

func (b *browser) signIn(t *testing.T, j *Jar, account string) {
	t.Helper()
	w := httptest.NewRecorder()
	j.Issue(w, b.request(), account)
	cs := w.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != Cookie || !cs[0].Secure || !cs[0].HttpOnly || cs[0].Path != "/" || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("Issue set %+v, want one Secure, HttpOnly, Strict cookie %s for /", cs, Cookie)
	}
	if cs[0].MaxAge != int(Lifetime/time.Second) {
		t.Errorf("MaxAge %d, want %d", cs[0].MaxAge, int(Lifetime/time.Second))
	}
	b.cookie = cs[0].Value
}

func newJar(key byte, now *time.Time) *Jar {
	j := New(bytes.Repeat([]byte{key}, 32))
	j.Now = func() time.Time { return *now }
	return j
}

func TestABrowserThatSignedInIsKnownToThatAccountOnly(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	j := newJar(1, &now)
	b := &browser{}
	if id := j.ID(b.request(), "alice@example.com"); id != "" {
		t.Fatalf("a browser without the cookie has id %q", id)
	}
	b.signIn(t, j, "alice@example.com")
	id := j.ID(b.request(), "alice@example.com")
	if id == "" {
		t.Fatal("the browser that signed in is unknown to its account")
	}
	if strings.Contains(b.cookie, "alice") {
		t.Errorf("the cookie names the account: %s", b.cookie)
	}
	if got := j.ID(b.request(), "bob@example.com"); got != "" {
		t.Errorf("alice's browser is known to bob's account (%q)", got)
	}
	if got := newJar(2, &now).ID(b.request(), "alice@example.com"); got != "" {
		t.Error("a jar with another key accepted the cookie")
	}
	// Another sign-in (bob) keeps alice's entry; a new sign-in of alice
	// gives a new id.
	b.signIn(t, j, "bob@example.com")
	if j.ID(b.request(), "bob@example.com") == "" || j.ID(b.request(), "alice@example.com") != id {
		t.Error("signing in to a second account lost the first")
	}
	b.signIn(t, j, "alice@example.com")
	if again := j.ID(b.request(), "alice@example.com"); again == "" || again == id {
		t.Errorf("a new sign-in kept id %q (was %q)", again, id)
	}
	if n := strings.Count(b.cookie, sep) + 1; n != 2 {
		t.Errorf("the cookie holds %d entries, want 2 (alice once, bob)", n)
	}
	now = now.Add(Lifetime)
	if got := j.ID(b.request(), "alice@example.com"); got != "" {
		t.Error("an entry outlived its lifetime")
	}
}

func TestTheCookieHoldsAFewAccountsNewestFirst(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	j := newJar(1, &now)
	b := &browser{}
	accounts := []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"}
	for _, a := range accounts {
		b.signIn(t, j, a)
	}
	if j.ID(b.request(), accounts[0]) != "" {
		t.Error("the oldest account is still known past MaxAccounts")
	}
	for _, a := range accounts[1:] {
		if j.ID(b.request(), a) == "" {
			t.Errorf("%s is unknown", a)
		}
	}
	if len(b.cookie) > maxCookieLen {
		t.Errorf("the cookie is %d bytes, more than the %d read", len(b.cookie), maxCookieLen)
	}
}

func TestATamperedEntryIsUnknown(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	j := newJar(1, &now)
	b := &browser{}
	b.signIn(t, j, "alice@example.com")
	parts := strings.Split(b.cookie, ".")
	for name, v := range map[string]string{
		"a later expiry": parts[0] + "." + "9999999999" + "." + parts[2],
		"another id":     strings.Repeat("A", len(parts[0])) + "." + parts[1] + "." + parts[2],
		"no mac":         parts[0] + "." + parts[1] + ".",
		"garbage":        "x.y.z~" + strings.Repeat("~", 300),
	} {
		if id := j.ID((&browser{cookie: v}).request(), "alice@example.com"); id != "" {
			t.Errorf("%s: accepted as %q", name, id)
		}
	}
}

func FuzzDeviceCookie(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	j := newJar(1, &now)
	b := &browser{}
	w := httptest.NewRecorder()
	j.Issue(w, b.request(), "alice@example.com")
	f.Add(w.Result().Cookies()[0].Value)
	f.Add("a.b.c~d.e.f")
	f.Add(strings.Repeat("~", 100))
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest("POST", "https://dash.example.com/_moat/login", nil)
		r.Header.Set("Cookie", Cookie+"="+v)
		if len(entries(r)) > MaxAccounts {
			t.Fatalf("more than %d entries read", MaxAccounts)
		}
		_ = j.ID(r, "alice@example.com")
		w := httptest.NewRecorder()
		j.Issue(w, r, "bob@example.com")
		if c := w.Result().Cookies(); len(c) != 1 || len(c[0].Value) > maxCookieLen {
			t.Fatalf("Issue over %q set %v", v, c)
		}
	})
}
