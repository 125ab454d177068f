package store

import (
	"context"
	"fmt"
	"time"
)

// Passkey is a user's WebAuthn credential. It signs for one relying party
// only: the host it was made on (RPID).
type Passkey struct {
	// ID is moat's own id of the passkey (random), for pages and the API.
	ID     string
	UserID string
	// CredentialID is the authenticator's credential id, base64url without
	// padding; unique across every user.
	CredentialID string
	// RPID is the relying party id the passkey is bound to: the host it was
	// made on.
	RPID string
	// Name is the label its owner gave it.
	Name string
	// Record is the credential record (public key, flags, transports),
	// sealed by the caller with the instance key.
	Record []byte
	// SignCount is the highest signature counter accepted so far.
	SignCount uint32
	CreatedAt time.Time
	LastUsed  time.Time // zero if never
}

// MaxPasskeyCredentialID bounds a credential id as the store keeps it
// (base64url of the 1023 bytes WebAuthn allows).
const MaxPasskeyCredentialID = 1364

// Passkeys keeps the passkeys of the directory's users. Store embeds it.
type Passkeys interface {
	// AddPasskey stores p, setting ID and CreatedAt when empty;
	// ErrDuplicate when its CredentialID is stored already.
	AddPasskey(ctx context.Context, p *Passkey) error
	// ListPasskeys lists a user's passkeys, oldest first.
	ListPasskeys(ctx context.Context, userID string) ([]*Passkey, error)
	// GetPasskeyByCredentialID finds a passkey by its credential id.
	GetPasskeyByCredentialID(ctx context.Context, credentialID string) (*Passkey, error)
	// DeletePasskey deletes one passkey of a user; ErrNotFound when the
	// user has none with that id.
	DeletePasskey(ctx context.Context, userID, id string) error
	// DeleteUserPasskeys deletes every passkey of a user and reports how
	// many there were.
	DeleteUserPasskeys(ctx context.Context, userID string) (int, error)
	// AdvancePasskey records a use of a passkey whose authenticator
	// reported the signature counter count, and reports whether it was
	// accepted: only a counter above the stored one, or zero where zero is
	// stored (an authenticator without a counter), is. So two instances
	// cannot both accept one assertion, and a cloned authenticator's
	// counter, behind the original's, is refused. ErrNotFound when the
	// passkey is gone.
	AdvancePasskey(ctx context.Context, id string, count uint32, at time.Time) (bool, error)
}

const passkeyCols = `id, user_id, credential_id, rp_id, name, record, sign_count, created_at, last_used`

func scanPasskey(r row) (*Passkey, error) {
	var p Passkey
	var count, created, used int64
	if err := r.Scan(&p.ID, &p.UserID, &p.CredentialID, &p.RPID, &p.Name, &p.Record, &count, &created, &used); err != nil {
		return nil, err
	}
	p.SignCount, p.CreatedAt, p.LastUsed = uint32(count), tm(created), tm(used)
	return &p, nil
}

func (s *sqlStore) AddPasskey(ctx context.Context, p *Passkey) error {
	if p.UserID == "" || p.CredentialID == "" || p.RPID == "" || len(p.Record) == 0 {
		return fmt.Errorf("add passkey: user, credential id, relying party and record are required")
	}
	if len(p.CredentialID) > MaxPasskeyCredentialID {
		return fmt.Errorf("add passkey: credential id longer than %d", MaxPasskeyCredentialID)
	}
	if p.ID == "" {
		p.ID = newID()
	}
	if p.CreatedAt.IsZero() {
		p.CreatedAt = now()
	}
	_, err := s.e.exec(ctx, `INSERT INTO passkeys (`+passkeyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		p.ID, p.UserID, p.CredentialID, p.RPID, p.Name, p.Record, int64(p.SignCount), ts(p.CreatedAt), ts(p.LastUsed))
	if err != nil {
		if s.e.isDuplicate(err) {
			return fmt.Errorf("add passkey: %w", ErrDuplicate)
		}
		return fmt.Errorf("add passkey of %s: %w", p.UserID, err)
	}
	return nil
}

func (s *sqlStore) ListPasskeys(ctx context.Context, userID string) ([]*Passkey, error) {
	r, err := s.e.query(ctx, `SELECT `+passkeyCols+` FROM passkeys WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list passkeys of %s: %w", userID, err)
	}
	defer r.Close()
	var out []*Passkey
	for r.Next() {
		p, err := scanPasskey(r)
		if err != nil {
			return nil, fmt.Errorf("list passkeys of %s: %w", userID, err)
		}
		out = append(out, p)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("list passkeys of %s: %w", userID, err)
	}
	return out, nil
}

func (s *sqlStore) GetPasskeyByCredentialID(ctx context.Context, credentialID string) (*Passkey, error) {
	p, err := scanPasskey(s.e.queryRow(ctx, `SELECT `+passkeyCols+` FROM passkeys WHERE credential_id = $1`, credentialID))
	if err != nil {
		if noRows(err) {
			return nil, fmt.Errorf("passkey: %w", ErrNotFound)
		}
		return nil, fmt.Errorf("get passkey: %w", err)
	}
	return p, nil
}

func (s *sqlStore) DeletePasskey(ctx context.Context, userID, id string) error {
	return s.updateOne(ctx, "delete passkey", `DELETE FROM passkeys WHERE user_id = $1 AND id = $2`, userID, id)
}

func (s *sqlStore) DeleteUserPasskeys(ctx context.Context, userID string) (int, error) {
	n, err := s.e.exec(ctx, `DELETE FROM passkeys WHERE user_id = $1`, userID)
	if err != nil {
		return 0, fmt.Errorf("delete passkeys of %s: %w", userID, err)
	}
	return int(n), nil
}

// AdvancePasskey is one conditional UPDATE, atomic on both engines.
func (s *sqlStore) AdvancePasskey(ctx context.Context, id string, count uint32, at time.Time) (bool, error) {
	n, err := s.e.exec(ctx, `UPDATE passkeys SET sign_count = $2, last_used = $3
		WHERE id = $1 AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))`, id, int64(count), ts(at))
	if err != nil {
		return false, fmt.Errorf("advance passkey %s: %w", id, err)
	}
	if n > 0 {
		return true, nil
	}
	var one int
	if err := s.e.queryRow(ctx, `SELECT 1 FROM passkeys WHERE id = $1`, id).Scan(&one); err != nil {
		if noRows(err) {
			return false, fmt.Errorf("advance passkey %s: %w", id, ErrNotFound)
		}
		return false, fmt.Errorf("advance passkey %s: %w", id, err)
	}
	return false, nil
}
