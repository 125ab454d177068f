package directory

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/auth/pat"
)

// Kind is why an operation was refused.
type Kind int

// Kinds of refusal: the console and the API answer 400, 404 and 409.
const (
	// Invalid: the input breaks a rule.
	Invalid Kind = iota
	// NotFound: no such user, session or token.
	NotFound
	// Conflict: the change cannot be made now (it exists already, or it
	// would lock the actor out).
	Conflict
)

// ErrInvalid and ErrNotFound match (errors.Is) every Invalid and
// NotFound refusal.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
)

// Refusal is an operation refused for a reason the person can fix; its
// message says which and how.
type Refusal struct {
	Kind Kind
	// Code is a stable code for scripts (the admin API's error field).
	Code string
	Msg  string
}

func (e *Refusal) Error() string { return e.Msg }

// Is makes a refusal match ErrInvalid or ErrNotFound by its kind.
func (e *Refusal) Is(target error) bool {
	return target == ErrInvalid && e.Kind == Invalid || target == ErrNotFound && e.Kind == NotFound
}

func refusal(kind Kind, code, format string, args ...any) error {
	return &Refusal{Kind: kind, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ValidEmail checks an address typed by an admin (already normalized):
// one plain addr-spec such as alice@example.com (PlainEmail).
func ValidEmail(email string) error {
	if email == "" || len(email) > maxEmailBytes {
		return refusal(Invalid, "admin.invalid_email", "invalid email %q: write a plain address such as alice@example.com, at most 254 characters", email)
	}
	if !PlainEmail(email) {
		return refusal(Invalid, "admin.invalid_email", "invalid email %q: write a plain address such as alice@example.com", email)
	}
	return nil
}

// maxEmailBytes bounds an address (RFC 5321's path limit, less the angle
// brackets).
const maxEmailBytes = 254

// PlainEmail reports whether email is one plain addr-spec, local@domain,
// and nothing an address parser could read another way: one @, no quoted
// local part, no display name, no angle brackets, no space or line break,
// at most 254 bytes. It is the rule for every address that names a person
// in moat, typed by an admin or reported by an identity provider: an
// allow list's domain: takes the text after the last @, so
// mallory@evil.example@example.com must never be taken for an address at
// example.com (oauth2-proxy CVE-2026-40574).
func PlainEmail(email string) bool {
	if email == "" || len(email) > maxEmailBytes || strings.Count(email, "@") != 1 || strings.ContainsAny(email, " \t\r\n<>\"\\(),;:[]") {
		return false
	}
	a, err := mail.ParseAddress(email)
	local, domain, _ := strings.Cut(email, "@")
	return err == nil && a.Address == email && a.Name == "" && local != "" && domain != ""
}

// groupName is the one rule for the names of moat's own groups: letters,
// digits and . _ : @ -, starting with a letter or digit, at most 64. No
// comma (X-Moat-User-Groups joins names with commas), no space, no markup.
var groupName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$`)

// MaxGroups bounds a user's groups in the directory.
const MaxGroups = 64

// CleanGroups checks, de-duplicates and sorts group names for a user of
// the directory. Each input may hold several names separated by commas,
// spaces or line breaks (the console's text field); every name must follow
// the group-name rule.
func CleanGroups(in []string) ([]string, error) {
	var out []string
	for _, g := range in {
		for _, part := range strings.FieldsFunc(g, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' }) {
			if !groupName.MatchString(part) {
				return nil, refusal(Invalid, "admin.invalid_group", "invalid group name %q: letters, digits and . _ : @ -, at most 64", part)
			}
			if !slices.Contains(out, part) {
				out = append(out, part)
			}
		}
	}
	if len(out) > MaxGroups {
		return nil, refusal(Invalid, "admin.invalid_group", "at most %d groups", MaxGroups)
	}
	slices.Sort(out)
	return out, nil
}

// ProviderGroups splits the groups an identity provider reported into
// those moat keeps and those it drops: a name with a comma or a control
// character cannot travel in X-Moat-User-Groups (comma-separated) without
// becoming two groups or breaking the header, so it is dropped (the caller
// logs it) rather than let an app read a group the provider never named
// (issue 12 #5). Other names are kept as the provider wrote them.
func ProviderGroups(in []string) (kept, dropped []string) {
	for _, g := range in {
		if strings.ContainsFunc(g, func(r rune) bool { return r == ',' || r < ' ' || r == 0x7f }) {
			dropped = append(dropped, g)
			continue
		}
		kept = append(kept, g)
	}
	return kept, dropped
}

// CleanName checks a display name: one line of at most 200 bytes.
func CleanName(n string) (string, error) {
	n = strings.TrimSpace(n)
	if len(n) > 200 || strings.ContainsAny(n, "\r\n\x00") {
		return "", refusal(Invalid, "admin.invalid_name", "the name must be one line of at most 200 bytes")
	}
	return n, nil
}

// MaxTokenName bounds the label of a personal access token.
const MaxTokenName = 100

// CleanTokenName checks the label of a personal access token: one line,
// not empty, at most MaxTokenName bytes.
func CleanTokenName(n string) (string, error) {
	n = strings.TrimSpace(n)
	if n == "" || len(n) > MaxTokenName || strings.ContainsAny(n, "\r\n\x00") {
		return "", refusal(Invalid, "admin.invalid_token_name", "invalid token name: one line of 1 to %d characters", MaxTokenName)
	}
	return n, nil
}

// otpAlphabet has no look-alikes (0/O, 1/l/I), so a password read aloud
// or copied from a terminal survives.
const otpAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"

// GeneratePassword returns a random one-time password of at least n (and
// at least 20) letters and digits, 5 bits each, in groups of five joined
// by dashes.
func GeneratePassword(n int) string {
	n = max(n, 20)
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	var sb strings.Builder
	for i, v := range b {
		if i > 0 && i%5 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(otpAlphabet[int(v)%len(otpAlphabet)]) // 256 % 32 == 0: no bias
	}
	return sb.String()
}

// Set-password links: a one-time link an admin hands out instead of a
// one-time password.
const (
	// SetPasswordPath is where a link points, followed by its token.
	SetPasswordPath = "/_moat/account/set-password/"
	// SetPasswordLinkTTL is how long a link works.
	SetPasswordLinkTTL = 72 * time.Hour
	// linkPrefix starts every link token.
	linkPrefix = "moat_setpw_"
)

// NewSetPasswordLink returns a fresh link token and the hash to store for
// it (store.Token of kind store.TokenSetPassword).
func NewSetPasswordLink() (token, hash string) {
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	token = linkPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	return token, SetPasswordLinkHash(token)
}

// SetPasswordLinkHash is what the store keeps of a link's token. It
// differs from a personal access token's hash on purpose: a link
// presented as a bearer token matches no personal access token.
func SetPasswordLinkHash(token string) string { return pat.Hash("moat set-password: " + token) }

// LooksLikeSetPasswordLink reports whether s has the shape of a link
// token, so a made-up one is refused before any store lookup.
func LooksLikeSetPasswordLink(s string) bool {
	return strings.HasPrefix(s, linkPrefix) && len(s) <= 128
}

// LogPath is a request path as logs may show it: the token of a
// set-password link, a secret, is cut off.
func LogPath(p string) string {
	if strings.HasPrefix(p, SetPasswordPath) && len(p) > len(SetPasswordPath) {
		return SetPasswordPath + "…"
	}
	return p
}

// Passwords sets new passwords: the configuration's policy, then a hash
// under the process's hashing limiter (so no page hashes past the bound a
// login flood is held to). Every page that sets a password and the console
// use it.
type Passwords struct {
	Limiter *password.Limiter
	Policy  password.Policy
}

// Hash checks pw against the policy for the user with email (a
// *password.PolicyError says why not) and returns its hash; a full limiter
// gives password.ErrBusy.
func (p Passwords) Hash(ctx context.Context, pw, email string) (string, error) {
	if err := p.Policy.Check(pw, email); err != nil {
		return "", err
	}
	return p.Limiter.Hash(ctx, pw, password.DefaultParams)
}

// OneTime makes a one-time password for an admin to hand out and its hash
// (the policy holds by construction: GeneratePassword).
func (p Passwords) OneTime(ctx context.Context) (pw, hash string, err error) {
	pw = GeneratePassword(p.Policy.MinLength)
	hash, err = p.Limiter.Hash(ctx, pw, password.DefaultParams)
	return pw, hash, err
}
