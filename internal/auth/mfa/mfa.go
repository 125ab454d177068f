// Package mfa is moat's second factor: TOTP (RFC 6238) with a QR code for
// enrolment, ±1 time step of tolerance, each code accepted once (even across
// instances, through the store), ten single-use recovery codes kept as
// hashes, and per-account throttling of wrong codes like passwords.
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

// ThrottledError says how long the account must wait before the next code.
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

	// Failures counts wrong codes per account (memory by default; the
	// same throttle.Throttle as passwords).
	Failures throttle.Throttle

	store store.Store
	key   *instancekey.Key
}

// New returns a Service keeping second factors in st, sealed with key.
func New(st store.Store, key *instancekey.Key) *Service {
	return &Service{Issuer: "moat", Now: time.Now, store: st, key: key, Failures: throttle.NewMemory(throttle.Accounts)}
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
// and returns the user's new recovery codes, to be shown once.
func (s *Service) Confirm(ctx context.Context, userID, account, code, clientIP string) ([]string, error) {
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
	if err := s.throttled(ctx, userID, s.now()); err != nil {
		return nil, err
	}
	if err := s.checkTOTP(ctx, t, account, code, clientIP); err != nil {
		return nil, err
	}
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
	s.audit(ctx, account, "mfa.enrol", account, clientIP, "totp")
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

// Verify checks a second-factor code of an enrolled user: a TOTP code
// (within ±1 step, never one already used) or a recovery code (then used
// up). Wrong codes count against the account; past the limits Verify
// returns a *ThrottledError without looking at the code, and a lock is an
// audit event.
func (s *Service) Verify(ctx context.Context, userID, account, code, clientIP string) error {
	if err := s.throttled(ctx, userID, s.now()); err != nil {
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
		err = s.checkTOTP(ctx, t, account, code, clientIP)
	case len(code) == recoveryLen:
		err = s.useRecovery(ctx, t, account, code, clientIP)
	default:
		err = s.failed(ctx, userID, account, clientIP, "malformed code")
	}
	if err == nil {
		_ = s.Failures.Reset(ctx, userID)
	}
	return err
}

// Throttled returns a *ThrottledError when the account must wait before
// its next second factor of any kind (a passkey too: every second factor
// shares one budget), or an error when the count cannot be read (fail
// closed).
func (s *Service) Throttled(ctx context.Context, userID string) error {
	return s.throttled(ctx, userID, s.now())
}

// CountFailure counts a failed second factor of another kind (a passkey
// assertion refused) against the account like a wrong code: an mfa.failure
// audit event saying why, and a lock when the budget runs out.
func (s *Service) CountFailure(ctx context.Context, userID, account, clientIP, why string) {
	_ = s.failed(ctx, userID, account, clientIP, why)
}

// Passed forgets the account's failures after a second factor of another
// kind (a passkey) passed, as Verify does after a good code.
func (s *Service) Passed(ctx context.Context, userID string) {
	if err := s.Failures.Reset(ctx, userID); err != nil {
		s.logger().Warn("reset the second-factor throttle", "err", err)
	}
}

// throttled is a *ThrottledError when the account must wait before its
// next code (or the count cannot be read: fail closed).
func (s *Service) throttled(ctx context.Context, userID string, now time.Time) error {
	d, locked, err := s.Failures.Wait(ctx, userID, now)
	if err != nil {
		return fmt.Errorf("second factor: read throttle: %w", err)
	}
	if d > 0 {
		return &ThrottledError{Wait: d, Locked: locked}
	}
	return nil
}

// checkTOTP accepts code if it matches a step within ±Skew of now that is
// later than every step accepted before (store.AdvanceTOTPStep decides
// atomically, so two instances cannot both take one code).
func (s *Service) checkTOTP(ctx context.Context, t *store.TOTP, account, code, clientIP string) error {
	code = normalize(code)
	if len(code) != Digits || !isDigits(code) {
		return s.failed(ctx, t.UserID, account, clientIP, "malformed code")
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
		return s.failed(ctx, t.UserID, account, clientIP, "wrong totp code")
	}
	ok, err := s.store.AdvanceTOTPStep(ctx, t.UserID, matched)
	if err != nil {
		return fmt.Errorf("verify totp: %w", err)
	}
	if !ok {
		return s.failed(ctx, t.UserID, account, clientIP, "totp code already used")
	}
	return nil
}

func (s *Service) useRecovery(ctx context.Context, t *store.TOTP, account, code, clientIP string) error {
	ok, err := s.store.UseRecoveryCode(ctx, t.UserID, HashRecoveryCode(code))
	if err != nil {
		return fmt.Errorf("use recovery code: %w", err)
	}
	if !ok {
		return s.failed(ctx, t.UserID, account, clientIP, "wrong or used recovery code")
	}
	s.audit(ctx, account, "mfa.recovery_code", account, clientIP, fmt.Sprintf("%d left", max(0, len(t.RecoveryCodes)-1)))
	return nil
}

// failed counts a wrong code and returns ErrInvalidCode.
func (s *Service) failed(ctx context.Context, userID, account, clientIP, why string) error {
	s.audit(ctx, account, "mfa.failure", account, clientIP, why)
	if locked, err := s.Failures.Fail(ctx, userID, s.now()); err != nil {
		s.logger().Error("count a wrong second-factor code", "err", err)
	} else if locked {
		s.audit(ctx, account, "mfa.locked", account, clientIP, fmt.Sprintf("second factor locked for %s after repeated wrong codes", throttle.Accounts.LockFor))
	}
	return ErrInvalidCode
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
	if err := s.store.DeleteTOTP(ctx, userID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("remove second factor: %w", err)
	}
	_ = s.Failures.Reset(ctx, userID)
	s.audit(ctx, actor, "mfa.remove", subject, clientIP, "")
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
