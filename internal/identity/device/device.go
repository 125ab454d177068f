// Package device is OWASP's device cookie: a browser that signed in to an
// account carries a cookie saying so, MACed with a key derived from the
// instance key (so every instance reads it) and good for Lifetime. The
// sign-in throttle gives such a browser a budget of its own on that account
// (internal/identity/throttle): failures from elsewhere cannot lock its
// owner out (issue 12, finding 2).
//
// The cookie names no account. Each entry is a random id, an expiry and a
// MAC over the account, the id and the expiry, so only a sign-in naming
// the right account finds its entry, and an entry cannot be moved to
// another account or kept past its expiry. A browser holds entries for up
// to MaxAccounts accounts, the newest first.
package device

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/identity/session"
)

// Cookie is the device cookie's name. The __Host- prefix makes the browser
// refuse it unless it is Secure, host-only and for Path=/.
const Cookie = "__Host-moat-device"

// Lifetime is how long an entry stays good after the sign-in that made
// it; each sign-in makes a new one.
const Lifetime = 30 * 24 * time.Hour

// MaxAccounts bounds the accounts one browser's cookie speaks for.
const MaxAccounts = 4

// Bounds on what is read.
const (
	idBytes      = 16
	macBytes     = 16
	maxCookieLen = MaxAccounts * 64
	sep          = "~"
)

var b64 = base64.RawURLEncoding

// Jar reads and issues device cookies with one key. It is safe for
// concurrent use.
type Jar struct {
	// Now is the clock (time.Now unless set before use).
	Now func() time.Time
	key []byte
}

// New returns a Jar MACing with key (the instance key's derivation for
// device cookies: every instance must use the same).
func New(key []byte) *Jar { return &Jar{Now: time.Now, key: key} }

// entry is one account's part of the cookie, read but not checked.
type entry struct {
	raw, id, exp, mac string
	expires           int64
}

// entries reads the cookie's entries, bounded.
func entries(r *http.Request) []entry {
	v := session.CookieValue(r, Cookie)
	if v == "" || len(v) > maxCookieLen {
		return nil
	}
	var out []entry
	for _, raw := range strings.SplitN(v, sep, MaxAccounts+1) {
		if len(out) == MaxAccounts {
			break
		}
		parts := strings.Split(raw, ".")
		if len(parts) != 3 || len(parts[0]) != b64.EncodedLen(idBytes) || len(parts[1]) > 12 || len(parts[2]) != b64.EncodedLen(macBytes) {
			continue
		}
		exp, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, entry{raw: raw, id: parts[0], exp: parts[1], mac: parts[2], expires: exp})
	}
	return out
}

func (j *Jar) mac(account, id, exp string) string {
	m := hmac.New(sha256.New, j.key)
	m.Write([]byte("moat device cookie|" + account + "|" + id + "|" + exp))
	return b64.EncodeToString(m.Sum(nil)[:macBytes])
}

// valid reports whether e speaks for account now.
func (j *Jar) valid(e entry, account string, now time.Time) bool {
	return now.Unix() < e.expires && hmac.Equal([]byte(e.mac), []byte(j.mac(account, e.id, e.exp)))
}

// ID returns the id of the browser's entry for account (a normalized email
// address), or "" when r carries none that is valid and unexpired.
func (j *Jar) ID(r *http.Request, account string) string {
	if account == "" {
		return ""
	}
	now := j.Now()
	for _, e := range entries(r) {
		if j.valid(e, account, now) {
			return e.id
		}
	}
	return ""
}

// Issue gives r's browser a new entry for account, after it signed in,
// keeping its unexpired entries for other accounts (the oldest go beyond
// MaxAccounts).
func (j *Jar) Issue(w http.ResponseWriter, r *http.Request, account string) {
	now := j.Now()
	var raw [idBytes]byte
	_, _ = rand.Read(raw[:])
	id, exp := b64.EncodeToString(raw[:]), strconv.FormatInt(now.Add(Lifetime).Unix(), 10)
	kept := []string{id + "." + exp + "." + j.mac(account, id, exp)}
	for _, e := range entries(r) {
		if len(kept) == MaxAccounts {
			break
		}
		if now.Unix() < e.expires && !j.valid(e, account, now) {
			kept = append(kept, e.raw)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: strings.Join(kept, sep), Path: "/", MaxAge: int(Lifetime / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}
