// Package store keeps everything moat must not lose: users, groups, sessions,
// second factors (TOTP and passkeys), access tokens, signing keys, the
// audit log, and the single-use tokens already spent (passkey challenges,
// OIDC states: Once), for every instance. One interface, two engines: embedded SQLite (the default, in data_dir) and
// PostgreSQL (for many instances). The store knows nothing of HTTP.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors callers tell apart.
var (
	ErrNotFound  = errors.New("not found")
	ErrDuplicate = errors.New("already exists")
	// ErrConflict: UpdateUser was given a user read before someone else
	// changed it (its UpdatedAt no longer matches). Read it again and
	// redo the change; never retry blindly, or a concurrent disable could
	// be undone.
	ErrConflict = errors.New("changed by someone else since it was read")
)

// User is one account of the built-in directory, or an SSO user moat has
// seen (then PasswordHash is empty).
type User struct {
	ID                 string
	Email              string // normalized: trimmed, lower-case
	Name               string
	Groups             []string
	PasswordHash       string // PHC string, argon2id with its parameters
	Disabled           bool
	MustChangePassword bool
	CreatedAt          time.Time
	UpdatedAt          time.Time
	LastLoginAt        time.Time // zero if never
}

// Session is a server-side sign-in. The cookie holds a random id; the store
// keeps only its hash (IDHash), so a stolen database opens no session.
type Session struct {
	IDHash    string
	UserID    string
	Email     string
	Provider  string   // "password" or an SSO provider name
	Groups    []string // groups from the provider at sign-in (SSO)
	MFA       bool     // second factor passed in this session
	ClientIP  string
	UserAgent string
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time
	RevokedAt time.Time // zero while valid
	// RefreshToken is the provider's refresh token, encrypted by the caller.
	RefreshToken []byte
	// AuthTime is when the user last proved who they are (password or
	// provider), for re-authentication checks.
	AuthTime time.Time
	// HostedDomain is the hd claim of an SSO sign-in (a Google Workspace
	// domain), which domain: members of allow lists also match.
	HostedDomain string
}

// TOTP is a user's enrolled second factor.
type TOTP struct {
	UserID        string
	Secret        []byte // encrypted by the caller with the instance key
	Confirmed     bool
	LastStep      int64    // highest time step accepted, to refuse replays
	RecoveryCodes []string // hashes; a used code is removed
	CreatedAt     time.Time
}

// TokenKind says what a Token is for.
type TokenKind string

// Token kinds.
const (
	// TokenPersonal is a personal access token: a script's bearer token.
	TokenPersonal TokenKind = "personal"
	// TokenSetPassword is a one-time link an admin hands out to set a
	// password; it never opens anything else.
	TokenSetPassword TokenKind = "set_password"
)

// Token is a personal access token or a set-password link; the store keeps
// only its hash.
type Token struct {
	ID     string
	Hash   string
	UserID string
	// Kind is what the token is for (TokenPersonal when empty at creation).
	Kind      TokenKind
	Name      string
	CreatedAt time.Time
	ExpiresAt time.Time // zero: no expiry
	RevokedAt time.Time
	LastUsed  time.Time
}

// SigningKey is a key moat signs assertions with.
type SigningKey struct {
	ID         string // the JWT kid
	Algorithm  string // "ES256"
	PublicKey  []byte // PKIX DER
	PrivateKey []byte // encrypted by the caller with the instance key
	CreatedAt  time.Time
	// RetireAt is when the key stopped signing (zero while current); it
	// stays published until every token it signed has expired.
	RetireAt time.Time
}

// AuditEvent is one entry of the audit log. Never holds a password, session
// id or token.
type AuditEvent struct {
	ID       int64
	Time     time.Time
	Actor    string // who did it: an email, "cli", or "system"
	Action   string // such as login.success, login.failure, user.create
	Subject  string // whom it concerns, usually an email
	ClientIP string
	Detail   string
}

// AuditFilter selects audit events; zero fields match all.
type AuditFilter struct {
	Since   time.Time
	Until   time.Time
	Actor   string
	Subject string
	Action  string
	Limit   int
	Offset  int
}

// UserFilter selects users for listing; zero fields match all.
type UserFilter struct {
	Query  string // substring of email or name
	Group  string
	Limit  int
	Offset int
}

// BlobInfo describes a stored blob without its value.
type BlobInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}

// Failures is the state of one failure counter (see Store.CountFailure).
// Times are on the clock of the instance that wrote them.
type Failures struct {
	// Count is the number of failures within the window, 0 once it has
	// passed.
	Count int64
	// Last is when the last failure was counted (zero when Count is 0).
	Last time.Time
	// LockedUntil is when the key's lock ends; zero when it is not locked.
	LockedUntil time.Time
}

// MaxBlobBytes bounds a blob's value: blobs are certificates, keys and
// small JSON documents, never uploads.
const MaxBlobBytes = 1 << 20

// Tx is what a transaction offers (see Store.InTx), and the part of Store
// that keeps the directory: users and groups, sessions, second factors,
// tokens, signing keys and the audit log.
type Tx interface {
	CreateUser(ctx context.Context, u *User) error // sets ID, timestamps; ErrDuplicate on email
	GetUser(ctx context.Context, id string) (*User, error)
	GetUserByEmail(ctx context.Context, email string) (*User, error)
	ListUsers(ctx context.Context, f UserFilter) ([]*User, int, error) // page and total
	// UpdateUser writes all fields but ID and CreatedAt (LastLoginAt only
	// moves forward), and sets UpdatedAt. When u.UpdatedAt is set (u was
	// read from the store) it succeeds only if the row is unchanged since,
	// else ErrConflict: a sign-in that read the user cannot undo an admin's
	// concurrent disable. ErrNotFound, ErrDuplicate (email) as usual.
	UpdateUser(ctx context.Context, u *User) error
	// RecordLogin sets LastLoginAt alone, without conflicting with
	// concurrent changes (and without changing UpdatedAt).
	RecordLogin(ctx context.Context, id string, at time.Time) error
	// SetPasswordHash replaces the password hash and must-change flag only
	// if the stored hash is still oldHash (a rehash at sign-in, or a
	// change after checking the current password), and reports whether it
	// did: false means someone reset the password meanwhile.
	SetPasswordHash(ctx context.Context, id, oldHash, newHash string, mustChange bool) (bool, error)
	// DeleteUser deletes the user, its groups, TOTP, passkeys and tokens,
	// and revokes (not deletes) its sessions so RevokedSince reports them.
	DeleteUser(ctx context.Context, id string) error
	ListGroups(ctx context.Context) (map[string][]string, error) // group -> emails, sorted

	// CreateSession stores s (CreatedAt and LastSeen default to now);
	// ErrDuplicate on IDHash. UserID need not be a stored user.
	CreateSession(ctx context.Context, s *Session) error
	// GetSession returns the session whatever its state: the caller checks
	// RevokedAt and ExpiresAt.
	GetSession(ctx context.Context, idHash string) (*Session, error)
	// TouchSession moves LastSeen forward (never back).
	TouchSession(ctx context.Context, idHash string, lastSeen time.Time) error
	// UpdateSession rewrites a live session's fields but IDHash, CreatedAt
	// and RevokedAt; ErrNotFound when it is gone or revoked.
	UpdateSession(ctx context.Context, s *Session) error
	// RevokeSession revokes one session; a second revocation keeps the
	// first time.
	RevokeSession(ctx context.Context, idHash string, at time.Time) error
	RevokeUserSessions(ctx context.Context, userID string, at time.Time) ([]string, error) // hashes revoked now
	// ListSessions lists live sessions (not revoked, not expired), newest
	// first: the user's, or everyone's when userID is "".
	ListSessions(ctx context.Context, userID string) ([]*Session, error)
	// RevokedSince lists sessions revoked strictly after t, so every
	// instance can close their WebSockets within seconds. Poll with some
	// overlap: instances' clocks differ.
	RevokedSince(ctx context.Context, t time.Time) ([]string, error)
	// DeleteExpiredSessions deletes sessions expired before the given time
	// and those revoked more than RevokedRetention before it.
	DeleteExpiredSessions(ctx context.Context, before time.Time) (int, error)

	GetTOTP(ctx context.Context, userID string) (*TOTP, error)
	PutTOTP(ctx context.Context, t *TOTP) error
	DeleteTOTP(ctx context.Context, userID string) error
	// AdvanceTOTPStep records step as used if it is above the last one, and
	// reports whether it was; two instances cannot both accept one code.
	AdvanceTOTPStep(ctx context.Context, userID string, step int64) (bool, error)
	// UseRecoveryCode removes hash from the user's codes and reports whether
	// it was there.
	UseRecoveryCode(ctx context.Context, userID, hash string) (bool, error)

	CreateToken(ctx context.Context, t *Token) error // sets ID, CreatedAt when empty; ErrDuplicate on Hash
	GetTokenByHash(ctx context.Context, hash string) (*Token, error)
	ListTokens(ctx context.Context, userID string) ([]*Token, error)
	RevokeToken(ctx context.Context, id string, at time.Time) error
	TouchToken(ctx context.Context, id string, at time.Time) error

	AddSigningKey(ctx context.Context, k *SigningKey) error     // sets ID, CreatedAt when empty
	ListSigningKeys(ctx context.Context) ([]*SigningKey, error) // oldest first
	RetireSigningKey(ctx context.Context, id string, at time.Time) error
	// DeleteSigningKey removes a retired key once every token it signed
	// has expired.
	DeleteSigningKey(ctx context.Context, id string) error

	Audit(ctx context.Context, e *AuditEvent) error // sets ID, and Time when zero
	// ListAudit lists matching events newest first; Since is inclusive,
	// Until exclusive, Limit 0 means no limit.
	ListAudit(ctx context.Context, f AuditFilter) ([]*AuditEvent, error)

	// Passkeys keeps WebAuthn credentials (passkeys.go), second factors
	// the directory removes with their audit event.
	Passkeys
}

// Store is the one interface both engines implement. Every method is safe
// for concurrent use, and by several moat processes on the same database.
// An error that wraps ErrUnavailable means the database could not be
// reached; ErrNotFound, ErrDuplicate and ErrConflict are answers.
type Store interface {
	Tx

	// InTx runs fn in one transaction and commits when fn returns nil; when
	// fn returns an error, or the commit fails, nothing fn did through tx
	// is kept. A directory change and its audit event go through one tx so
	// that neither is stored without the other. fn must use tx alone (on
	// SQLite the Store itself waits for the transaction's connection), and
	// must return the first error a tx method gives: after a failed
	// statement a PostgreSQL transaction refuses every other one. Values fn
	// passed in may carry ids and timestamps of a change that was rolled
	// back. InTx does not retry.
	InTx(ctx context.Context, fn func(tx Tx) error) error

	// PutBlob creates or replaces the blob at key (at most MaxBlobBytes),
	// for every instance to read.
	PutBlob(ctx context.Context, key string, value []byte) error
	// GetBlob returns the value at key and when it was written;
	// ErrNotFound when there is none.
	GetBlob(ctx context.Context, key string) ([]byte, time.Time, error)
	// ListBlobs lists the blobs whose keys start with prefix, by key.
	ListBlobs(ctx context.Context, prefix string) ([]BlobInfo, error)
	// DeleteBlobs deletes the blob at key and every blob under key + "/",
	// and reports how many it deleted.
	DeleteBlobs(ctx context.Context, key string) (int, error)

	// TryLock takes the lock called name for owner until ttl from now and
	// reports whether it did. It succeeds when the lock is free, held by
	// owner already (which extends it), or held by someone whose lease
	// has run out: a crashed holder blocks the others for at most ttl.
	TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// RefreshLock extends owner's lease on name to ttl from now;
	// ErrNotFound when owner no longer holds it.
	RefreshLock(ctx context.Context, name, owner string, ttl time.Duration) error
	// Unlock releases owner's lock on name. Releasing a lock that owner
	// does not hold (any more) is not an error and changes nothing.
	Unlock(ctx context.Context, name, owner string) error

	// CountFailure counts one failure under key and returns the key's
	// state with it. The count is forgotten once window passes without
	// another failure of key. Concurrent calls from any number of
	// instances each get a count of their own (1, 2, 3, …), so a budget
	// of n failures holds exactly.
	CountFailure(ctx context.Context, key string, window time.Duration) (Failures, error)
	// GetFailures returns key's state; the zero Failures when it has none.
	GetFailures(ctx context.Context, key string) (Failures, error)
	// ResetFailures forgets key's failures but not its lock.
	ResetFailures(ctx context.Context, key string) error
	// LockFailures locks key for d from now; a lock that lasts longer
	// already is kept.
	LockFailures(ctx context.Context, key string, d time.Duration) error
	// UnlockFailures forgets key's lock and its failures.
	UnlockFailures(ctx context.Context, key string) error
	// DeleteExpiredFailures deletes the keys whose failures and lock had
	// both run out before the given time, and reports how many.
	DeleteExpiredFailures(ctx context.Context, before time.Time) (int, error)

	// Usage keeps who used which route (usage.go).
	Usage
	// Once keeps the single-use tokens already spent (once.go): passkey
	// challenges and OIDC states.
	Once

	Close() error
}
