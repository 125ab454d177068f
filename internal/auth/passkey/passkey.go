// Package passkey is moat's WebAuthn, through github.com/go-webauthn/webauthn:
// adding a passkey to an account, using one as the second factor of a
// password sign-in (or to prove it later on the account page), and signing
// in with one alone (a discoverable credential, with user verification).
//
// The relying party is the host a request came to: a passkey signs only for
// the host it was made on (moat serves many hosts, and a browser would
// refuse any other anyway). A ceremony's state (challenge, relying party,
// user, expiry) travels with the browser sealed with the instance key and
// bound to what started it (the session, the pending second step, the
// browser's CSRF cookie), so any instance can finish a ceremony another
// began; each challenge finishes one ceremony only, recorded in the store.
// A signature counter that does not move forward (a cloned authenticator)
// is refused. Failed assertions count against the account's second-factor
// budget, shared with TOTP codes (mfa.Service).
package passkey

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
)

// Bounds.
const (
	// CeremonyTTL is how long a ceremony may take from its begin to its
	// finish; the browser is told the same.
	CeremonyTTL = 5 * time.Minute
	// MaxPerUser bounds the passkeys of one account.
	MaxPerUser = 20
	// MaxName bounds a passkey's name, in characters.
	MaxName = 64
	// MaxResponse bounds the browser's answer to a ceremony (an attestation
	// with a certificate chain is a few KiB).
	MaxResponse = 64 << 10
	// maxState bounds a sealed ceremony state as read back.
	maxState = 4 << 10
)

// Errors callers tell apart.
var (
	// ErrInvalid: the answer does not verify (signature, origin, relying
	// party, challenge, an unknown or another user's credential).
	ErrInvalid = errors.New("the passkey could not be verified")
	// ErrExpired: the ceremony's state is expired, was used already, is for
	// another purpose, user, host or browser, or does not open.
	ErrExpired = errors.New("the passkey request expired or was used already")
	// ErrCloned: the signature counter did not move forward, so two copies
	// of the credential may exist.
	ErrCloned = errors.New("the passkey's signature counter went backwards: it may have been copied")
	// ErrNone: the user has no passkey for this host.
	ErrNone = errors.New("no passkey for this site")
	// ErrExists: the authenticator's credential is registered already.
	ErrExists = errors.New("this passkey is registered already")
	// ErrTooMany: the account has MaxPerUser passkeys.
	ErrTooMany = errors.New("too many passkeys")
	// ErrBadRP: the host cannot be a relying party (an IP address, no
	// name): passkeys need a host name.
	ErrBadRP = errors.New("passkeys need a host name, not an address")
	// ErrName: a passkey's name breaks CleanName's rule.
	ErrName = fmt.Errorf("a passkey's name is one line of 1 to %d characters", MaxName)
)

// Purpose is what a ceremony is for; its state opens only for it.
type Purpose string

// Purposes.
const (
	// Register adds a passkey to a signed-in account.
	Register Purpose = "register"
	// Assert proves a known user's passkey: the second step of a password
	// sign-in, or a session proving its second factor.
	Assert Purpose = "assert"
	// SignIn signs in with a discoverable passkey alone.
	SignIn Purpose = "sign-in"
)

// RP is the relying party of one request: moat on the host it came to.
type RP struct {
	// ID is the host name: the only one a passkey made here signs for.
	ID string
	// Origin is https://host[:port], what the browser reports.
	Origin string
	// Name is what the authenticator may show for the site.
	Name string
}

// RPOf is the relying party for a request whose Host header is hostport;
// name is shown by authenticators (the host when empty). An IP address
// cannot be one (ErrBadRP).
func RPOf(hostport, name string) (RP, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" || len(host) > 253 || protocol.ValidateRPID(host) != nil || strings.ContainsAny(host, "/?#@[]:") {
		return RP{}, ErrBadRP
	}
	origin := "https://" + host
	if port != "" && port != "443" {
		origin += ":" + port
	}
	if name == "" {
		name = host
	}
	return RP{ID: host, Origin: origin, Name: name}, nil
}

// Begun is what a page hands to navigator.credentials (Options, as
// create() or get() take them once parsed from JSON) and the sealed state
// the finish needs back.
type Begun struct {
	Options any    `json:"options"`
	State   string `json:"state"`
}

// Service runs the ceremonies. Create it with New; it is safe for
// concurrent use.
type Service struct {
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger receives audit lines (slog.Default when nil).
	Logger *slog.Logger

	store  store.Store
	key    *instancekey.Key
	factor *mfa.Service
}

// New returns the ceremonies over st, sealing with key; factor is the
// account's second factor, whose failure budget passkey assertions share.
func New(st store.Store, key *instancekey.Key, factor *mfa.Service) *Service {
	return &Service{store: st, key: key, factor: factor}
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// CleanName checks a passkey's name: one line of 1 to MaxName characters
// (fallback when empty); ErrName when it breaks the rule.
func CleanName(name, fallback string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = strings.TrimSpace(fallback)
	}
	if name == "" || utf8.RuneCountInString(name) > MaxName || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", ErrName
	}
	return name, nil
}

// relyingParty is the library's relying party for rp; uv is the user
// verification asked for.
func relyingParty(rp RP, uv protocol.UserVerificationRequirement) (*webauthn.WebAuthn, error) {
	t := webauthn.TimeoutConfig{Enforce: true, Timeout: CeremonyTTL, TimeoutUVD: CeremonyTTL}
	return webauthn.New(&webauthn.Config{
		RPID:                  rp.ID,
		RPDisplayName:         rp.Name,
		RPOrigins:             []string{rp.Origin},
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: uv,
		},
		Timeouts: webauthn.TimeoutsConfig{Login: t, Registration: t},
	})
}

// user is an account as the library sees it, with its passkeys for one
// relying party.
type user struct {
	u     *store.User
	creds []webauthn.Credential
	rows  []*store.Passkey
}

func (u *user) WebAuthnID() []byte                         { return []byte(u.u.ID) }
func (u *user) WebAuthnName() string                       { return u.u.Email }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }
func (u *user) WebAuthnDisplayName() string {
	if u.u.Name != "" {
		return u.u.Name
	}
	return u.u.Email
}

// row returns the stored passkey of credential id.
func (u *user) row(id []byte) *store.Passkey {
	for i, c := range u.creds {
		if bytes.Equal(c.ID, id) {
			return u.rows[i]
		}
	}
	return nil
}

// recordAAD binds a sealed credential record to its owner, host and
// credential id, so a record copied to another row does not open.
func recordAAD(userID, rpID, credID string) []byte {
	return []byte("moat passkey record|" + userID + "|" + rpID + "|" + credID)
}

// load returns u with its passkeys for rpID (every host's when rpID is
// ""), their records opened and their counters the stored ones.
func (s *Service) load(ctx context.Context, u *store.User, rpID string) (*user, error) {
	list, err := s.store.ListPasskeys(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	out := &user{u: u}
	for _, p := range list {
		if rpID != "" && p.RPID != rpID {
			continue
		}
		raw, err := s.key.Open(p.Record, recordAAD(p.UserID, p.RPID, p.CredentialID))
		if err != nil {
			// A record that does not open was not written by moat with this
			// key: never let it sign anyone in.
			s.logger().Error("a passkey record does not open; ignoring it", "user", u.Email, "passkey", p.ID, "err", err)
			continue
		}
		var c webauthn.Credential
		if err := json.Unmarshal(raw, &c); err != nil {
			s.logger().Error("a passkey record does not decode; ignoring it", "user", u.Email, "passkey", p.ID, "err", err)
			continue
		}
		c.Authenticator.SignCount = p.SignCount
		out.creds = append(out.creds, c)
		out.rows = append(out.rows, p)
	}
	return out, nil
}

// Count returns how many passkeys the user has, and how many of them sign
// for rpID.
func (s *Service) Count(ctx context.Context, userID, rpID string) (all, here int, err error) {
	list, err := s.store.ListPasskeys(ctx, userID)
	if err != nil {
		return 0, 0, fmt.Errorf("list passkeys: %w", err)
	}
	for _, p := range list {
		if p.RPID == rpID {
			here++
		}
	}
	return len(list), here, nil
}

// ceremony is the state a ceremony carries from its begin to its finish.
type ceremony struct {
	Purpose Purpose              `json:"p"`
	RPID    string               `json:"rp"`
	Origin  string               `json:"o"`
	UserID  string               `json:"u,omitempty"`
	Expires int64                `json:"e"`
	Session webauthn.SessionData `json:"s"`
}

func stateAAD(p Purpose, binding string) []byte {
	return []byte("moat passkey ceremony|" + string(p) + "|" + binding)
}

// Binding turns what a ceremony is bound to (a session id hash, the
// pending second step's cookie, the CSRF cookie) into the form it is
// sealed with.
func Binding(kind, value string) string {
	sum := sha256.Sum256([]byte(kind + "|" + value))
	return hex.EncodeToString(sum[:])
}

func (s *Service) seal(c ceremony, binding string) (string, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	sealed, err := s.key.Seal(raw, stateAAD(c.Purpose, binding))
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// open reads back a ceremony's state for purpose, rp, userID (for a known
// user) and binding, and uses up its challenge: a state opens once, on any
// instance, before it expires. Anything else is ErrExpired.
func (s *Service) open(ctx context.Context, state string, p Purpose, rp RP, userID, binding string) (*ceremony, error) {
	if state == "" || len(state) > maxState {
		return nil, ErrExpired
	}
	sealed, err := base64.RawURLEncoding.DecodeString(state)
	if err != nil {
		return nil, ErrExpired
	}
	raw, err := s.key.Open(sealed, stateAAD(p, binding))
	if err != nil {
		return nil, ErrExpired
	}
	var c ceremony
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, ErrExpired
	}
	now := s.now()
	expires := time.Unix(c.Expires, 0)
	if c.Purpose != p || c.RPID != rp.ID || c.Origin != rp.Origin || c.UserID != userID || !now.Before(expires) || c.Session.Challenge == "" {
		return nil, ErrExpired
	}
	sum := sha256.Sum256([]byte("moat passkey challenge|" + c.Session.Challenge))
	fresh, err := s.store.UsePasskeyChallenge(ctx, hex.EncodeToString(sum[:]), expires.Add(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("use passkey challenge: %w", err)
	}
	if !fresh {
		return nil, ErrExpired
	}
	return &c, nil
}

func (s *Service) begin(p Purpose, rp RP, userID string, sd *webauthn.SessionData, options any, binding string) (*Begun, error) {
	c := ceremony{Purpose: p, RPID: rp.ID, Origin: rp.Origin, UserID: userID, Expires: s.now().Add(CeremonyTTL).Unix(), Session: *sd}
	state, err := s.seal(c, binding)
	if err != nil {
		return nil, fmt.Errorf("seal passkey ceremony: %w", err)
	}
	return &Begun{Options: options, State: state}, nil
}

// BeginRegistration starts adding a passkey to u's account on rp, bound to
// binding (the session). The authenticator is asked for a discoverable
// credential where it can make one (so the passkey can also sign in
// alone), and not to make a second one for this host.
func (s *Service) BeginRegistration(ctx context.Context, rp RP, u *store.User, binding string) (*Begun, error) {
	all, err := s.load(ctx, u, "")
	if err != nil {
		return nil, fmt.Errorf("begin passkey registration: %w", err)
	}
	if len(all.rows) >= MaxPerUser {
		return nil, ErrTooMany
	}
	var exclude []protocol.CredentialDescriptor
	for i, c := range all.creds {
		if all.rows[i].RPID == rp.ID {
			exclude = append(exclude, c.Descriptor())
		}
	}
	wa, err := relyingParty(rp, protocol.VerificationPreferred)
	if err != nil {
		return nil, fmt.Errorf("begin passkey registration: %w", err)
	}
	creation, sd, err := wa.BeginRegistration(all, webauthn.WithExclusions(exclude), webauthn.WithRegistrationOrigin(rp.Origin))
	if err != nil {
		return nil, fmt.Errorf("begin passkey registration: %w", err)
	}
	return s.begin(Register, rp, u.ID, sd, creation, binding)
}

// FinishRegistration checks the browser's answer to a registration
// (response, the credential as JSON) and adds the passkey, named name
// (CleanName), to u's account. clientIP goes to the audit log.
func (s *Service) FinishRegistration(ctx context.Context, rp RP, u *store.User, binding, state string, response []byte, name, clientIP string) (*store.Passkey, error) {
	name, err := CleanName(name, "")
	if err != nil {
		return nil, err
	}
	c, err := s.open(ctx, state, Register, rp, u.ID, binding)
	if err != nil {
		return nil, err
	}
	if len(response) > MaxResponse {
		return nil, ErrInvalid
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		s.refused("registration", u.Email, err)
		return nil, ErrInvalid
	}
	wa, err := relyingParty(rp, protocol.VerificationPreferred)
	if err != nil {
		return nil, fmt.Errorf("finish passkey registration: %w", err)
	}
	cred, err := wa.CreateCredential(&user{u: u}, c.Session, parsed)
	if err != nil {
		s.refused("registration", u.Email, err)
		return nil, ErrInvalid
	}
	credID := base64.RawURLEncoding.EncodeToString(cred.ID)
	if len(credID) > store.MaxPasskeyCredentialID {
		return nil, ErrInvalid
	}
	raw, err := json.Marshal(cred)
	if err != nil {
		return nil, fmt.Errorf("finish passkey registration: %w", err)
	}
	sealed, err := s.key.Seal(raw, recordAAD(u.ID, rp.ID, credID))
	if err != nil {
		return nil, fmt.Errorf("finish passkey registration: %w", err)
	}
	if all, _, err := s.Count(ctx, u.ID, rp.ID); err != nil {
		return nil, err
	} else if all >= MaxPerUser {
		return nil, ErrTooMany
	}
	p := &store.Passkey{UserID: u.ID, CredentialID: credID, RPID: rp.ID, Name: name, Record: sealed, SignCount: cred.Authenticator.SignCount}
	if err := s.store.AddPasskey(ctx, p); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return nil, ErrExists
		}
		return nil, fmt.Errorf("finish passkey registration: %w", err)
	}
	s.audit(ctx, u.Email, "passkey.add", u.Email, clientIP, fmt.Sprintf("%q for %s", name, rp.ID))
	return p, nil
}

// BeginAssertion starts proving u's passkey on rp (the second step of a
// password sign-in, or a session proving its second factor), bound to
// binding, for a browser at from. ErrNone when u has no passkey for this
// host; a *mfa.ThrottledError while that browser must wait.
func (s *Service) BeginAssertion(ctx context.Context, rp RP, u *store.User, binding string, from throttle.Source) (*Begun, error) {
	if err := s.factor.Throttled(ctx, u.Email, from); err != nil {
		return nil, err
	}
	wu, err := s.load(ctx, u, rp.ID)
	if err != nil {
		return nil, fmt.Errorf("begin passkey assertion: %w", err)
	}
	if len(wu.creds) == 0 {
		return nil, ErrNone
	}
	wa, err := relyingParty(rp, protocol.VerificationPreferred)
	if err != nil {
		return nil, fmt.Errorf("begin passkey assertion: %w", err)
	}
	assertion, sd, err := wa.BeginLogin(wu, webauthn.WithLoginOrigin(rp.Origin))
	if err != nil {
		return nil, fmt.Errorf("begin passkey assertion: %w", err)
	}
	return s.begin(Assert, rp, u.ID, sd, assertion, binding)
}

// FinishAssertion checks the answer to BeginAssertion of the browser at
// from and returns the passkey that signed. A refusal counts on the
// second-factor budgets of that browser and of the account.
func (s *Service) FinishAssertion(ctx context.Context, rp RP, u *store.User, binding, state string, response []byte, from throttle.Source) (*store.Passkey, error) {
	at, err := s.factor.Attempt(ctx, u.Email, from)
	if err != nil {
		return nil, err
	}
	c, err := s.open(ctx, state, Assert, rp, u.ID, binding)
	if err != nil {
		if errors.Is(err, ErrExpired) {
			s.factor.CountFailure(ctx, at, "passkey: expired or replayed challenge")
		}
		return nil, err
	}
	parsed, err := parseAssertion(response)
	if err != nil {
		s.factor.CountFailure(ctx, at, "passkey: malformed answer")
		return nil, ErrInvalid
	}
	wu, err := s.load(ctx, u, rp.ID)
	if err != nil {
		return nil, fmt.Errorf("finish passkey assertion: %w", err)
	}
	if len(wu.creds) == 0 {
		return nil, ErrNone
	}
	wa, err := relyingParty(rp, protocol.VerificationPreferred)
	if err != nil {
		return nil, fmt.Errorf("finish passkey assertion: %w", err)
	}
	cred, err := wa.ValidateLogin(wu, c.Session, parsed)
	if err != nil {
		s.refused("assertion", u.Email, err)
		s.factor.CountFailure(ctx, at, "passkey: assertion refused")
		return nil, ErrInvalid
	}
	p, err := s.used(ctx, wu, cred, parsed.Response.AuthenticatorData.Counter, at)
	if err != nil {
		return nil, err
	}
	s.factor.Passed(ctx, at)
	return p, nil
}

// BeginSignIn starts a sign-in with a passkey alone on rp, bound to
// binding (the browser). The authenticator must verify the user (PIN or
// biometrics), so the passkey is two factors in one.
func (s *Service) BeginSignIn(ctx context.Context, rp RP, binding string) (*Begun, error) {
	wa, err := relyingParty(rp, protocol.VerificationRequired)
	if err != nil {
		return nil, fmt.Errorf("begin passkey sign-in: %w", err)
	}
	assertion, sd, err := wa.BeginDiscoverableLogin(webauthn.WithLoginOrigin(rp.Origin), webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, fmt.Errorf("begin passkey sign-in: %w", err)
	}
	return s.begin(SignIn, rp, "", sd, assertion, binding)
}

// FinishSignIn checks the answer to BeginSignIn of the browser at from and
// returns the user it signs in and the passkey that signed. The user must
// exist, be enabled and not be waiting out failed second factors; a
// refusal of a known credential counts on the second-factor budgets of the
// browser and of its account. Unknown credentials are ErrInvalid, like
// every other refusal.
func (s *Service) FinishSignIn(ctx context.Context, rp RP, binding, state string, response []byte, from throttle.Source) (*store.User, *store.Passkey, error) {
	c, err := s.open(ctx, state, SignIn, rp, "", binding)
	if err != nil {
		return nil, nil, err
	}
	parsed, err := parseAssertion(response)
	if err != nil {
		return nil, nil, ErrInvalid
	}
	row, err := s.store.GetPasskeyByCredentialID(ctx, base64.RawURLEncoding.EncodeToString(parsed.RawID))
	if errors.Is(err, store.ErrNotFound) || err == nil && row.RPID != rp.ID {
		return nil, nil, ErrInvalid
	}
	if err != nil {
		return nil, nil, fmt.Errorf("finish passkey sign-in: %w", err)
	}
	u, err := s.store.GetUser(ctx, row.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrInvalid
	}
	if err != nil {
		return nil, nil, fmt.Errorf("finish passkey sign-in: %w", err)
	}
	at, err := s.factor.Attempt(ctx, u.Email, from)
	if err != nil {
		return nil, nil, err
	}
	wu, err := s.load(ctx, u, rp.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("finish passkey sign-in: %w", err)
	}
	wa, err := relyingParty(rp, protocol.VerificationRequired)
	if err != nil {
		return nil, nil, fmt.Errorf("finish passkey sign-in: %w", err)
	}
	lookup := func(rawID, userHandle []byte) (webauthn.User, error) {
		if !bytes.Equal(userHandle, []byte(u.ID)) {
			return nil, errors.New("the user handle is not the credential's owner")
		}
		return wu, nil
	}
	_, cred, err := wa.ValidatePasskeyLogin(lookup, c.Session, parsed)
	if err != nil {
		s.refused("sign-in", u.Email, err)
		s.factor.CountFailure(ctx, at, "passkey sign-in refused")
		return nil, nil, ErrInvalid
	}
	if u.Disabled {
		return nil, nil, ErrInvalid
	}
	p, err := s.used(ctx, wu, cred, parsed.Response.AuthenticatorData.Counter, at)
	if err != nil {
		return nil, nil, err
	}
	s.factor.Passed(ctx, at)
	return u, p, nil
}

// used records a verified assertion of attempt at whose authenticator
// reported the signature counter got: the counter must move forward (a
// clone's does not), atomically, so two instances cannot both accept one.
func (s *Service) used(ctx context.Context, wu *user, cred *webauthn.Credential, got uint32, at throttle.Attempt) (*store.Passkey, error) {
	row := wu.row(cred.ID)
	if row == nil {
		return nil, ErrInvalid
	}
	cloned := cred.Authenticator.CloneWarning
	if !cloned {
		ok, err := s.store.AdvancePasskey(ctx, row.ID, got, s.now())
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrInvalid // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("record passkey use: %w", err)
		}
		cloned = !ok
	}
	if cloned {
		s.audit(ctx, "system", "passkey.clone_suspected", wu.u.Email, ipString(at.Client),
			fmt.Sprintf("%q for %s: signature counter %d not above %d; refused", row.Name, row.RPID, got, row.SignCount))
		s.factor.CountFailure(ctx, at, "passkey: signature counter went backwards")
		return nil, ErrCloned
	}
	row.SignCount, row.LastUsed = got, s.now()
	return row, nil
}

func parseAssertion(response []byte) (*protocol.ParsedCredentialAssertionData, error) {
	if len(response) == 0 || len(response) > MaxResponse {
		return nil, errors.New("empty or oversized answer")
	}
	return protocol.ParseCredentialRequestResponseBytes(response)
}

// refused logs why the library refused an answer (never shown to the
// person: it may help an attacker).
func (s *Service) refused(what, account string, err error) {
	attrs := []any{"ceremony", what, "user", account, "err", err}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		attrs = append(attrs, "detail", pe.Details, "info", pe.DevInfo)
	}
	s.logger().Info("passkey refused", attrs...)
}

// audit records an event in the store and the log.
// ipString is the audit log's form of a client address ("" for none).
func ipString(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}

func (s *Service) audit(ctx context.Context, actor, action, subject, clientIP, detail string) {
	s.logger().Info("audit", "action", action, "user", subject, "client_ip", clientIP, "detail", detail)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.Audit(ctx, &store.AuditEvent{Time: s.now(), Actor: actor, Action: action, Subject: subject, ClientIP: clientIP, Detail: detail}); err != nil {
		s.logger().Error("write audit event", "action", action, "err", err)
	}
}
