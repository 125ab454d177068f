// Package mfa is moat's second factor: TOTP (RFC 6238) with a QR code for
// enrolment, ±1 time step of tolerance, each code accepted once (even across
// instances, through the store), ten single-use recovery codes kept as
// hashes, and wrong codes throttled by the sign-in throttle under the same
// rules as passwords (internal/identity/throttle, SecondFactor).
//
// The TOTP secret is sealed with the instance key before it reaches the
// store, bound to the user's id so a sealed secret cannot be moved to
// another account.
package mfa

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
)

// TOTP parameters: the ones every authenticator app understands.
const (
	Period   = 30 // seconds per step
	Digits   = 6
	Skew     = 1 // steps accepted either side of now
	secretSz = 20
	// RecoveryCodes is how many recovery codes a user gets.
	RecoveryCodes = 10
	// recoveryLen is the letters of one recovery code: 16 of 32 symbols,
	// 80 bits, so a plain SHA-256 is enough to store it.
	recoveryLen = 16
	// maxCodeLen bounds what Verify reads.
	maxCodeLen = 64
	// qrSize is the QR code image's width and height in pixels.
	qrSize = 200
)

// Errors callers tell apart.
var (
	// ErrNotEnrolled: the user has no confirmed second factor.
	ErrNotEnrolled = errors.New("no second factor enrolled")
	// ErrEnrolled: the user already has a confirmed second factor;
	// remove it first.
	ErrEnrolled = errors.New("a second factor is already enrolled")
	// ErrNoPending: Confirm without a Begin.
	ErrNoPending = errors.New("no enrolment in progress")
	// ErrInvalidCode: wrong, expired or already used code.
	ErrInvalidCode = errors.New("the code is not valid")
)

// ThrottledError says how long the browser must wait before the next code,
// and whether that is because a run of wrong codes locked the account's
// second factor for unknown devices.
type ThrottledError struct {
	Wait   time.Duration
	Locked bool
}

func (e *ThrottledError) Error() string {
	if e.Locked {
		return fmt.Sprintf("too many wrong codes: locked for %s", e.Wait.Round(time.Second))
	}
	return fmt.Sprintf("too many wrong codes: wait %s", e.Wait.Round(time.Second))
}

// Service enrols and checks second factors. Create it with New; it is safe
// for concurrent use.
type Service struct {
	// Issuer is the name authenticator apps show beside the account
	// ("moat" unless set).
	Issuer string
	// Now is the clock (time.Now unless set; a fake in tests).
	Now func() time.Time
	// Logger receives audit lines (slog.Default unless set).
	Logger *slog.Logger

	// Throttle counts wrong codes (the process's sign-in throttle, so a
	// code counts once wherever it is tried and on every instance).
	Throttle *throttle.Service

	store store.Store
	key   *instancekey.Key
}

// New returns a Service keeping second factors in st, sealed with key,
// whose wrong codes count in th.
func New(st store.Store, key *instancekey.Key, th *throttle.Service) *Service {
	return &Service{Issuer: "moat", Now: time.Now, store: st, key: key, Throttle: th}
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

// Enrolment is what a user needs to add moat to an authenticator app.
type Enrolment struct {
	// Secret is the key as text (base32), for typing in by hand.
	Secret string
	// URL is the otpauth:// URL the QR code holds.
	URL string
	// QR is a PNG image of the QR code, rendered here (no third party).
	QR []byte
}

func aad(userID string) []byte { return []byte("moat totp secret: " + userID) }

// Begin starts an enrolment for the user: a new random secret, stored
// sealed and unconfirmed until Confirm sees a code made from it. It
// replaces an earlier unconfirmed enrolment and refuses (ErrEnrolled)
// when a confirmed one exists.
func (s *Service) Begin(ctx context.Context, userID, account string) (*Enrolment, error) {
	cur, err := s.store.GetTOTP(ctx, userID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("begin totp enrolment: %w", err)
	}
	if cur != nil && cur.Confirmed {
		return nil, ErrEnrolled
	}
	raw := make([]byte, secretSz)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("begin totp enrolment: %w", err)
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: s.Issuer, AccountName: account, Period: Period, Digits: otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1, Secret: raw, Rand: rand.Reader,
	})
	if err != nil {
		return nil, fmt.Errorf("begin totp enrolment: %w", err)
	}
	sealed, err := s.key.Seal([]byte(key.Secret()), aad(userID))
	if err != nil {
		return nil, fmt.Errorf("begin totp enrolment: %w", err)
	}
	if err := s.store.PutTOTP(ctx, &store.TOTP{UserID: userID, Secret: sealed, CreatedAt: s.now()}); err != nil {
		return nil, fmt.Errorf("begin totp enrolment: %w", err)
	}
	img, err := key.Image(qrSize, qrSize)
	if err != nil {
		return nil, fmt.Errorf("render qr code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("render qr code: %w", err)
	}
	return &Enrolment{Secret: key.Secret(), URL: key.URL(), QR: buf.Bytes()}, nil
}

// Pending returns the enrolment in progress again (after a wrong code, to
// show the same QR code), or ErrNoPending.
func (s *Service) Pending(ctx context.Context, userID, account string) (*Enrolment, error) {
	t, err := s.store.GetTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || err == nil && t.Confirmed {
		return nil, ErrNoPending
	}
	if err != nil {
		return nil, fmt.Errorf("read totp enrolment: %w", err)
	}
	secret, err := s.key.Open(t.Secret, aad(userID))
	if err != nil {
		return nil, fmt.Errorf("read totp enrolment: %w", err)
	}
	key, err := otp.NewKeyFromURL(keyURL(s.Issuer, account, string(secret)))
	if err != nil {
		return nil, fmt.Errorf("read totp enrolment: %w", err)
	}
	img, err := key.Image(qrSize, qrSize)
	if err != nil {
		return nil, fmt.Errorf("render qr code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("render qr code: %w", err)
	}
	return &Enrolment{Secret: string(secret), URL: key.URL(), QR: buf.Bytes()}, nil
}

func keyURL(issuer, account, secret string) string {
	k, _ := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: Period, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1, Secret: mustB32(secret)})
	if k == nil {
		return ""
	}
	return k.URL()
}

func mustB32(s string) []byte {
	b, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	return b
}

// Confirm finishes an enrolment when code is valid for the pending secret
// and returns the user's new recovery codes, to be shown once. Wrong codes
// count like Verify's.
func (s *Service) Confirm(ctx context.Context, userID, account, code string, from throttle.Source) ([]string, error) {
	t, err := s.store.GetTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoPending
	}
	if err != nil {
		return nil, fmt.Errorf("confirm totp: %w", err)
	}
	if t.Confirmed {
		return nil, ErrEnrolled
	}
	at := attempt(account, from)
	if err := s.begin(ctx, at); err != nil {
		return nil, err
	}
	if err := s.checkTOTP(ctx, t, at, code); err != nil {
		return nil, err
	}
	s.passed(ctx, at)
	codes, hashes, err := newRecoveryCodes()
	if err != nil {
		return nil, err
	}
	t, err = s.store.GetTOTP(ctx, userID) // LastStep moved
	if err != nil {
		return nil, fmt.Errorf("confirm totp: %w", err)
	}
	t.Confirmed, t.RecoveryCodes = true, hashes
	if err := s.store.PutTOTP(ctx, t); err != nil {
		return nil, fmt.Errorf("confirm totp: %w", err)
	}
	s.audit(ctx, account, "mfa.enrol", account, ipString(from.Client), "totp")
	return codes, nil
}

// Enrolled reports whether the user has a confirmed second factor.
func (s *Service) Enrolled(ctx context.Context, userID string) (bool, error) {
	t, err := s.store.GetTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read totp: %w", err)
	}
	return t.Confirmed, nil
}

// RecoveryCodesLeft returns how many unused recovery codes the user has.
func (s *Service) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	t, err := s.store.GetTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read totp: %w", err)
	}
	return len(t.RecoveryCodes), nil
}

// Verify checks a second-factor code of an enrolled user (account is the
// user's email address): a TOTP code (within ±1 step, never one already
// used) or a recovery code (then used up). Wrong codes count in the
// throttle for where they come from; past its budgets Verify returns a
// *ThrottledError without looking at the code, and a lock is an audit
// event.
func (s *Service) Verify(ctx context.Context, userID, account, code string, from throttle.Source) error {
	at := attempt(account, from)
	if err := s.begin(ctx, at); err != nil {
		return err
	}
	t, err := s.store.GetTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || err == nil && !t.Confirmed {
		return ErrNotEnrolled
	}
	if err != nil {
		return fmt.Errorf("verify second factor: %w", err)
	}
	code = normalize(code)
	switch {
	case len(code) == Digits && isDigits(code):
		err = s.checkTOTP(ctx, t, at, code)
	case len(code) == recoveryLen:
		err = s.useRecovery(ctx, t, at, code)
	default:
		err = s.failed(ctx, at, "malformed code")
	}
	if err == nil {
		s.passed(ctx, at)
	}
	return err
}

// attempt is a second-factor attempt at account from where.
func attempt(account string, from throttle.Source) throttle.Attempt {
	return throttle.Attempt{Factor: throttle.SecondFactor, Account: store.NormalizeEmail(account), Source: from}
}

// Throttled returns a *ThrottledError when a second factor of another kind
// (a passkey: every second factor shares one budget) at account, from
// where, would be refused now; it counts nothing. An error means the
// counts cannot be read (fail closed).
func (s *Service) Throttled(ctx context.Context, account string, from throttle.Source) error {
	v, err := s.Throttle.Check(ctx, attempt(account, from))
	return refusal(v, err)
}

// Attempt begins an attempt of another kind of second factor (a passkey)
// at account from where: a *ThrottledError when it must wait, else the
// attempt, to be followed by CountFailure or Passed.
func (s *Service) Attempt(ctx context.Context, account string, from throttle.Source) (throttle.Attempt, error) {
	at := attempt(account, from)
	return at, s.begin(ctx, at)
}

// CountFailure counts a failed attempt of another kind (a passkey refused)
// like a wrong code: an mfa.failure audit event saying why, and a lock
// when it locks.
func (s *Service) CountFailure(ctx context.Context, at throttle.Attempt, why string) {
	_ = s.failed(ctx, at, why)
}

// Passed forgets what an attempt of another kind spent once it passed,
// as Verify does after a good code.
func (s *Service) Passed(ctx context.Context, at throttle.Attempt) { s.passed(ctx, at) }

// begin asks the throttle whether at may be checked: a *ThrottledError
// when it must wait, an error when the counts cannot be read (fail
// closed).
func (s *Service) begin(ctx context.Context, at throttle.Attempt) error {
	return refusal(s.Throttle.Begin(ctx, at))
}

// refusal is a verdict as an error: a *ThrottledError when refused.
func refusal(v throttle.Verdict, err error) error {
	if err != nil {
		return fmt.Errorf("second factor: %w", err)
	}
	if v.Refused() {
		return &ThrottledError{Wait: v.Wait, Locked: v.Reason == throttle.ReasonLocked}
	}
	return nil
}

// passed forgets what a good code's attempt spent.
func (s *Service) passed(ctx context.Context, at throttle.Attempt) {
	if err := s.Throttle.Passed(ctx, at); err != nil {
		s.logger().Warn("second factor: reset the throttle", "err", err)
	}
}

// checkTOTP accepts code if it matches a step within ±Skew of now that is
// later than every step accepted before (store.AdvanceTOTPStep decides
// atomically, so two instances cannot both take one code).
func (s *Service) checkTOTP(ctx context.Context, t *store.TOTP, at throttle.Attempt, code string) error {
	code = normalize(code)
	if len(code) != Digits || !isDigits(code) {
		return s.failed(ctx, at, "malformed code")
	}
	secret, err := s.key.Open(t.Secret, aad(t.UserID))
	if err != nil {
		return fmt.Errorf("verify totp: %w", err)
	}
	now := s.now().Unix() / Period
	matched := int64(-1)
	for d := int64(-Skew); d <= Skew; d++ {
		step := now + d
		want, err := hotp.GenerateCodeCustom(string(secret), uint64(step), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return fmt.Errorf("verify totp: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			matched = step
		}
	}
	if matched < 0 {
		return s.failed(ctx, at, "wrong totp code")
	}
	ok, err := s.store.AdvanceTOTPStep(ctx, t.UserID, matched)
	if err != nil {
		return fmt.Errorf("verify totp: %w", err)
	}
	if !ok {
		return s.failed(ctx, at, "totp code already used")
	}
	return nil
}

func (s *Service) useRecovery(ctx context.Context, t *store.TOTP, at throttle.Attempt, code string) error {
	ok, err := s.store.UseRecoveryCode(ctx, t.UserID, HashRecoveryCode(code))
	if err != nil {
		return fmt.Errorf("use recovery code: %w", err)
	}
	if !ok {
		return s.failed(ctx, at, "wrong or used recovery code")
	}
	s.audit(ctx, at.Account, "mfa.recovery_code", at.Account, ipString(at.Client), fmt.Sprintf("%d left", max(0, len(t.RecoveryCodes)-1)))
	return nil
}

// failed counts a wrong code and returns ErrInvalidCode.
func (s *Service) failed(ctx context.Context, at throttle.Attempt, why string) error {
	ip := ipString(at.Client)
	s.audit(ctx, at.Account, "mfa.failure", at.Account, ip, why)
	if locked, err := s.Throttle.Failed(ctx, at); err != nil {
		s.logger().Error("count a wrong second-factor code", "err", err)
	} else if locked {
		s.audit(ctx, at.Account, "mfa.locked", at.Account, ip, fmt.Sprintf("second-factor codes from unknown devices locked for %s after repeated wrong codes; browsers signed in before still work; an administrator can unlock",
			s.Throttle.Limits[throttle.SecondFactor].Lock.For))
	}
	return ErrInvalidCode
}

// ipString is the audit log's form of a client address ("" for none).
func ipString(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}

// RegenerateRecoveryCodes replaces the user's recovery codes with new ones,
// returned to be shown once.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, userID, actor, clientIP string) ([]string, error) {
	t, err := s.store.GetTOTP(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || err == nil && !t.Confirmed {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("regenerate recovery codes: %w", err)
	}
	codes, hashes, err := newRecoveryCodes()
	if err != nil {
		return nil, err
	}
	t.RecoveryCodes = hashes
	if err := s.store.PutTOTP(ctx, t); err != nil {
		return nil, fmt.Errorf("regenerate recovery codes: %w", err)
	}
	s.audit(ctx, actor, "mfa.recovery_regenerate", actor, clientIP, "")
	return codes, nil
}

// Remove deletes the user's second factor (enrolled or pending); actor and
// subject go to the audit log. Removing what does not exist is no error.
func (s *Service) Remove(ctx context.Context, userID, actor, subject, clientIP string) error {
	if actor == "" {
		actor = "anonymous"
	}
	// The removal and its audit event commit together, or neither does.
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		if err := tx.DeleteTOTP(ctx, userID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return tx.Audit(ctx, &store.AuditEvent{Time: time.Now(), Actor: actor, Action: "mfa.remove", Subject: subject, ClientIP: clientIP})
	})
	if err != nil {
		return fmt.Errorf("remove second factor: %w", err)
	}
	s.logger().Info("audit", "action", "mfa.remove", "user", subject, "client_ip", clientIP, "detail", "")
	return nil
}

// HashRecoveryCode is what the store keeps of a recovery code: SHA-256 of
// its normalized form (lower case, no dashes or spaces). The code has 80
// random bits, so no slow hash is needed.
func HashRecoveryCode(code string) string {
	sum := sha256.Sum256([]byte("moat recovery code: " + normalize(code)))
	return hex.EncodeToString(sum[:])
}

// alphabet has no look-alikes (0/O, 1/l/I).
const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"

func newRecoveryCodes() (codes, hashes []string, err error) {
	for range RecoveryCodes {
		b := make([]byte, recoveryLen)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, fmt.Errorf("recovery codes: %w", err)
		}
		var sb strings.Builder
		for i, v := range b {
			if i > 0 && i%4 == 0 {
				sb.WriteByte('-')
			}
			sb.WriteByte(alphabet[int(v)%len(alphabet)])
		}
		codes = append(codes, sb.String())
		hashes = append(hashes, HashRecoveryCode(sb.String()))
	}
	return codes, hashes, nil
}

// normalize drops spaces and dashes and lower-cases a typed code; anything
// but ASCII letters and digits makes it invalid ("").
func normalize(code string) string {
	if len(code) > maxCodeLen {
		return ""
	}
	b := make([]byte, 0, len(code))
	for i := 0; i < len(code); i++ {
		switch c := code[i]; {
		case c == ' ' || c == '-' || c == '\t':
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b = append(b, c)
		default:
			return ""
		}
	}
	return string(b)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func (s *Service) audit(ctx context.Context, actor, action, subject, clientIP, detail string) {
	s.logger().Info("audit", "action", action, "user", subject, "client_ip", clientIP, "detail", detail)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if actor == "" {
		actor = "anonymous"
	}
	if err := s.store.Audit(ctx, &store.AuditEvent{Time: time.Now(), Actor: actor, Action: action, Subject: subject, ClientIP: clientIP, Detail: detail}); err != nil {
		s.logger().Error("write audit event", "action", action, "err", err)
	}
}
