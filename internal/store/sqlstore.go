package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// sqlStore implements Store with one body of SQL for both engines.
type sqlStore struct {
	e engine
}

var _ Store = (*sqlStore)(nil)

func (s *sqlStore) Close() error { return s.e.close() }

// cleanGroups trims, drops empties, de-duplicates and sorts group names.
func cleanGroups(gs []string) []string {
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ---- users ----

const userCols = `id, email, name, password_hash, disabled, must_change_password, created_at, updated_at, last_login_at`

func scanUser(r row) (*User, error) {
	var u User
	var disabled, mcp, created, updated, lastLogin int64
	if err := r.Scan(&u.ID, &u.Email, &u.Name, &u.PasswordHash, &disabled, &mcp, &created, &updated, &lastLogin); err != nil {
		return nil, err
	}
	u.Disabled, u.MustChangePassword = disabled != 0, mcp != 0
	u.CreatedAt, u.UpdatedAt, u.LastLoginAt = tm(created), tm(updated), tm(lastLogin)
	return &u, nil
}

func (s *sqlStore) CreateUser(ctx context.Context, u *User) error {
	email := NormalizeEmail(u.Email)
	if email == "" {
		return fmt.Errorf("create user: email is empty")
	}
	id := newID()
	t := now()
	groups := cleanGroups(u.Groups)
	err := s.e.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			id, email, u.Name, u.PasswordHash, b2i(u.Disabled), b2i(u.MustChangePassword), ts(t), ts(t), ts(u.LastLoginAt)); err != nil {
			return err
		}
		return setGroups(ctx, q, id, groups, false)
	})
	if err != nil {
		if s.e.isDuplicate(err) {
			return fmt.Errorf("create user %s: %w", email, ErrDuplicate)
		}
		return fmt.Errorf("create user %s: %w", email, err)
	}
	u.ID, u.Email, u.Groups, u.CreatedAt, u.UpdatedAt = id, email, groups, t, t
	return nil
}

func setGroups(ctx context.Context, q querier, userID string, groups []string, replace bool) error {
	if replace {
		if _, err := q.exec(ctx, `DELETE FROM user_groups WHERE user_id = $1`, userID); err != nil {
			return err
		}
	}
	for _, g := range groups {
		if _, err := q.exec(ctx, `INSERT INTO user_groups (user_id, grp) VALUES ($1, $2)`, userID, g); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqlStore) loadGroups(ctx context.Context, users ...*User) error {
	if len(users) == 0 {
		return nil
	}
	byID := make(map[string]*User, len(users))
	for _, u := range users {
		byID[u.ID] = u
		u.Groups = []string{}
	}
	q := `SELECT user_id, grp FROM user_groups ORDER BY grp`
	var args []any
	// A long page reads every membership rather than bind more
	// parameters than an engine allows.
	if len(users) <= 500 {
		ph := make([]string, len(users))
		for i, u := range users {
			ph[i] = fmt.Sprintf("$%d", i+1)
			args = append(args, u.ID)
		}
		q = `SELECT user_id, grp FROM user_groups WHERE user_id IN (` + strings.Join(ph, ",") + `) ORDER BY grp`
	}
	r, err := s.e.query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer r.Close()
	for r.Next() {
		var id, g string
		if err := r.Scan(&id, &g); err != nil {
			return err
		}
		if u := byID[id]; u != nil {
			u.Groups = append(u.Groups, g)
		}
	}
	return r.Err()
}

func (s *sqlStore) getUser(ctx context.Context, what, where string, arg any) (*User, error) {
	u, err := scanUser(s.e.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE `+where+` = $1`, arg))
	if err != nil {
		if noRows(err) {
			return nil, fmt.Errorf("user %s: %w", what, ErrNotFound)
		}
		return nil, fmt.Errorf("get user %s: %w", what, err)
	}
	if err := s.loadGroups(ctx, u); err != nil {
		return nil, fmt.Errorf("get user %s: groups: %w", what, err)
	}
	return u, nil
}

func (s *sqlStore) GetUser(ctx context.Context, id string) (*User, error) {
	return s.getUser(ctx, id, "id", id)
}

func (s *sqlStore) GetUserByEmail(ctx context.Context, email string) (*User, error) {
	email = NormalizeEmail(email)
	return s.getUser(ctx, email, "email", email)
}

// likePattern escapes LIKE's wildcards in a user's query.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(s)) + "%"
}

func (s *sqlStore) ListUsers(ctx context.Context, f UserFilter) ([]*User, int, error) {
	var where []string
	var args []any
	if f.Query != "" {
		args = append(args, likePattern(f.Query))
		n := len(args)
		where = append(where, fmt.Sprintf(`(email LIKE $%d ESCAPE '\' OR LOWER(name) LIKE $%d ESCAPE '\')`, n, n))
	}
	if f.Group != "" {
		args = append(args, f.Group)
		where = append(where, fmt.Sprintf(`EXISTS (SELECT 1 FROM user_groups g WHERE g.user_id = users.id AND g.grp = $%d)`, len(args)))
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var total int64
	if err := s.e.queryRow(ctx, `SELECT COUNT(*) FROM users`+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("list users: %w", err)
	}
	q := `SELECT ` + userCols + ` FROM users` + cond + ` ORDER BY email` + page(&args, f.Limit, f.Offset)
	r, err := s.e.query(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list users: %w", err)
	}
	var users []*User
	for r.Next() {
		u, err := scanUser(r)
		if err != nil {
			r.Close()
			return nil, 0, fmt.Errorf("list users: %w", err)
		}
		users = append(users, u)
	}
	r.Close()
	if err := r.Err(); err != nil {
		return nil, 0, fmt.Errorf("list users: %w", err)
	}
	if err := s.loadGroups(ctx, users...); err != nil {
		return nil, 0, fmt.Errorf("list users: groups: %w", err)
	}
	return users, int(total), nil
}

// page returns the LIMIT/OFFSET clause, adding its arguments.
func page(args *[]any, limit, offset int) string {
	if limit <= 0 && offset <= 0 {
		return ""
	}
	if limit <= 0 {
		limit = 1 << 30
	}
	*args = append(*args, limit, max(offset, 0))
	return fmt.Sprintf(" LIMIT $%d OFFSET $%d", len(*args)-1, len(*args))
}

func (s *sqlStore) UpdateUser(ctx context.Context, u *User) error {
	email := NormalizeEmail(u.Email)
	if email == "" {
		return fmt.Errorf("update user %s: email is empty", u.ID)
	}
	groups := cleanGroups(u.Groups)
	var updated int64
	err := s.e.inTx(ctx, func(q querier) error {
		// The new updated_at is strictly later than the old one, so a
		// second writer in the same microsecond still sees a change.
		query := `UPDATE users SET email = $2, name = $3, password_hash = $4, disabled = $5, must_change_password = $6,
			updated_at = CASE WHEN updated_at >= $7 THEN updated_at + 1 ELSE $7 END,
			last_login_at = CASE WHEN last_login_at < $8 THEN $8 ELSE last_login_at END WHERE id = $1`
		args := []any{u.ID, email, u.Name, u.PasswordHash, b2i(u.Disabled), b2i(u.MustChangePassword), ts(now()), ts(u.LastLoginAt)}
		if !u.UpdatedAt.IsZero() {
			query += ` AND updated_at = $9`
			args = append(args, ts(u.UpdatedAt))
		}
		err := q.queryRow(ctx, query+` RETURNING updated_at`, args...).Scan(&updated)
		if noRows(err) {
			var one int
			if err := q.queryRow(ctx, `SELECT 1 FROM users WHERE id = $1`, u.ID).Scan(&one); err != nil {
				if noRows(err) {
					return ErrNotFound
				}
				return err
			}
			return ErrConflict
		}
		if err != nil {
			return err
		}
		return setGroups(ctx, q, u.ID, groups, true)
	})
	if err != nil {
		if s.e.isDuplicate(err) {
			return fmt.Errorf("update user %s: email %s: %w", u.ID, email, ErrDuplicate)
		}
		return fmt.Errorf("update user %s: %w", u.ID, err)
	}
	u.Email, u.Groups, u.UpdatedAt = email, groups, tm(updated)
	return nil
}

func (s *sqlStore) RecordLogin(ctx context.Context, id string, at time.Time) error {
	return s.updateOne(ctx, "record login of "+id, `UPDATE users SET last_login_at = $2 WHERE id = $1`, id, ts(at))
}

func (s *sqlStore) SetPasswordHash(ctx context.Context, id, oldHash, newHash string, mustChange bool) (bool, error) {
	n, err := s.e.exec(ctx, `UPDATE users SET password_hash = $3, must_change_password = $4,
		updated_at = CASE WHEN updated_at >= $5 THEN updated_at + 1 ELSE $5 END WHERE id = $1 AND password_hash = $2`,
		id, oldHash, newHash, b2i(mustChange), ts(now()))
	if err != nil {
		return false, fmt.Errorf("set password of %s: %w", id, err)
	}
	if n > 0 {
		return true, nil
	}
	if _, err := s.GetUser(ctx, id); err != nil {
		return false, err
	}
	return false, nil
}

// DeleteUser deletes the user with its groups, second factor and tokens.
// Its sessions are revoked rather than deleted, so that RevokedSince
// reports them and every instance closes their WebSockets;
// DeleteExpiredSessions removes them later.
func (s *sqlStore) DeleteUser(ctx context.Context, id string) error {
	err := s.e.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at = 0`, id, ts(now())); err != nil {
			return err
		}
		n, err := q.exec(ctx, `DELETE FROM users WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete user %s: %w", id, err)
	}
	return nil
}

func (s *sqlStore) ListGroups(ctx context.Context) (map[string][]string, error) {
	r, err := s.e.query(ctx, `SELECT g.grp, u.email FROM user_groups g JOIN users u ON u.id = g.user_id ORDER BY g.grp, u.email`)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer r.Close()
	out := map[string][]string{}
	for r.Next() {
		var g, e string
		if err := r.Scan(&g, &e); err != nil {
			return nil, fmt.Errorf("list groups: %w", err)
		}
		out[g] = append(out[g], e)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return out, nil
}

// ---- sessions ----

const sessionCols = `id_hash, user_id, email, provider, groups_json, mfa, client_ip, user_agent, created_at, last_seen, expires_at, revoked_at, refresh_token, auth_time, hosted_domain`

func scanSession(r row) (*Session, error) {
	var x Session
	var groups string
	var mfa, created, seen, expires, revoked, auth int64
	if err := r.Scan(&x.IDHash, &x.UserID, &x.Email, &x.Provider, &groups, &mfa, &x.ClientIP, &x.UserAgent,
		&created, &seen, &expires, &revoked, &x.RefreshToken, &auth, &x.HostedDomain); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(groups), &x.Groups); err != nil {
		return nil, fmt.Errorf("session groups: %w", err)
	}
	if len(x.RefreshToken) == 0 {
		x.RefreshToken = nil
	}
	x.MFA = mfa != 0
	x.CreatedAt, x.LastSeen, x.ExpiresAt, x.RevokedAt, x.AuthTime = tm(created), tm(seen), tm(expires), tm(revoked), tm(auth)
	return &x, nil
}

func groupsJSON(gs []string) string {
	if gs == nil {
		gs = []string{}
	}
	b, _ := json.Marshal(gs)
	return string(b)
}

func (s *sqlStore) CreateSession(ctx context.Context, x *Session) error {
	if x.IDHash == "" || x.UserID == "" {
		return fmt.Errorf("create session: id hash and user id are required")
	}
	if x.CreatedAt.IsZero() {
		x.CreatedAt = now()
	}
	if x.LastSeen.IsZero() {
		x.LastSeen = x.CreatedAt
	}
	_, err := s.e.exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		x.IDHash, x.UserID, x.Email, x.Provider, groupsJSON(x.Groups), b2i(x.MFA), x.ClientIP, x.UserAgent,
		ts(x.CreatedAt), ts(x.LastSeen), ts(x.ExpiresAt), ts(x.RevokedAt), nonNil(x.RefreshToken), ts(x.AuthTime), x.HostedDomain)
	if err != nil {
		if s.e.isDuplicate(err) {
			return fmt.Errorf("create session: %w", ErrDuplicate)
		}
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// GetSession returns the session whatever its state: the caller checks
// RevokedAt and ExpiresAt.
func (s *sqlStore) GetSession(ctx context.Context, idHash string) (*Session, error) {
	x, err := scanSession(s.e.queryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id_hash = $1`, idHash))
	if err != nil {
		if noRows(err) {
			return nil, fmt.Errorf("session: %w", ErrNotFound)
		}
		return nil, fmt.Errorf("get session: %w", err)
	}
	return x, nil
}

func (s *sqlStore) TouchSession(ctx context.Context, idHash string, lastSeen time.Time) error {
	n, err := s.e.exec(ctx, `UPDATE sessions SET last_seen = CASE WHEN last_seen < $2 THEN $2 ELSE last_seen END WHERE id_hash = $1`, idHash, ts(lastSeen))
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("touch session: %w", ErrNotFound)
	}
	return nil
}

func (s *sqlStore) UpdateSession(ctx context.Context, x *Session) error {
	// Only a live session is updated, and never its revocation: a
	// read-modify-write racing RevokeSession must not bring it back.
	n, err := s.e.exec(ctx, `UPDATE sessions SET user_id = $2, email = $3, provider = $4, groups_json = $5, mfa = $6, client_ip = $7, user_agent = $8,
		last_seen = $9, expires_at = $10, refresh_token = $11, auth_time = $12, hosted_domain = $13 WHERE id_hash = $1 AND revoked_at = 0`,
		x.IDHash, x.UserID, x.Email, x.Provider, groupsJSON(x.Groups), b2i(x.MFA), x.ClientIP, x.UserAgent,
		ts(x.LastSeen), ts(x.ExpiresAt), nonNil(x.RefreshToken), ts(x.AuthTime), x.HostedDomain)
	if err != nil {
		return fmt.Errorf("update session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("update session: %w", ErrNotFound)
	}
	return nil
}

// RevokeSession revokes one session; revoking a revoked session keeps its
// first revocation time. ErrNotFound if there is no such session.
func (s *sqlStore) RevokeSession(ctx context.Context, idHash string, at time.Time) error {
	err := s.e.inTx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `UPDATE sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at = 0`, idHash, ts(at))
		if err != nil || n > 0 {
			return err
		}
		var one int
		if err := q.queryRow(ctx, `SELECT 1 FROM sessions WHERE id_hash = $1`, idHash).Scan(&one); err != nil {
			if noRows(err) {
				return ErrNotFound
			}
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return nil
}

func (s *sqlStore) RevokeUserSessions(ctx context.Context, userID string, at time.Time) ([]string, error) {
	var hashes []string
	err := s.e.inTx(ctx, func(q querier) error {
		hashes = nil
		r, err := q.query(ctx, `UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at = 0 RETURNING id_hash`, userID, ts(at))
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var h string
			if err := r.Scan(&h); err != nil {
				return err
			}
			hashes = append(hashes, h)
		}
		return r.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("revoke sessions of %s: %w", userID, err)
	}
	slices.Sort(hashes)
	return hashes, nil
}

// ListSessions lists live sessions (not revoked, not expired), newest
// first: the user's, or everyone's when userID is "".
func (s *sqlStore) ListSessions(ctx context.Context, userID string) ([]*Session, error) {
	q := `SELECT ` + sessionCols + ` FROM sessions WHERE revoked_at = 0 AND expires_at > $1`
	args := []any{ts(now())}
	if userID != "" {
		q += ` AND user_id = $2`
		args = append(args, userID)
	}
	r, err := s.e.query(ctx, q+` ORDER BY created_at DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer r.Close()
	var out []*Session
	for r.Next() {
		x, err := scanSession(r)
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, x)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// RevokedSince lists the hashes of sessions revoked strictly after t.
func (s *sqlStore) RevokedSince(ctx context.Context, t time.Time) ([]string, error) {
	r, err := s.e.query(ctx, `SELECT id_hash FROM sessions WHERE revoked_at > $1 ORDER BY revoked_at`, ts(t))
	if err != nil {
		return nil, fmt.Errorf("revoked sessions: %w", err)
	}
	defer r.Close()
	var out []string
	for r.Next() {
		var h string
		if err := r.Scan(&h); err != nil {
			return nil, fmt.Errorf("revoked sessions: %w", err)
		}
		out = append(out, h)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("revoked sessions: %w", err)
	}
	return out, nil
}

// DeleteExpiredSessions deletes sessions that expired before the given
// time, and revoked ones revoked more than RevokedRetention before it.
func (s *sqlStore) DeleteExpiredSessions(ctx context.Context, before time.Time) (int, error) {
	n, err := s.e.exec(ctx, `DELETE FROM sessions WHERE expires_at < $1 OR (revoked_at > 0 AND revoked_at < $2)`,
		ts(before), ts(before.Add(-RevokedRetention)))
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return int(n), nil
}

// ---- TOTP ----

func (s *sqlStore) GetTOTP(ctx context.Context, userID string) (*TOTP, error) {
	var t TOTP
	var confirmed, created int64
	err := s.e.queryRow(ctx, `SELECT user_id, secret, confirmed, last_step, created_at FROM totp WHERE user_id = $1`, userID).
		Scan(&t.UserID, &t.Secret, &confirmed, &t.LastStep, &created)
	if err != nil {
		if noRows(err) {
			return nil, fmt.Errorf("totp of %s: %w", userID, ErrNotFound)
		}
		return nil, fmt.Errorf("get totp of %s: %w", userID, err)
	}
	t.Confirmed, t.CreatedAt = confirmed != 0, tm(created)
	r, err := s.e.query(ctx, `SELECT hash FROM totp_recovery WHERE user_id = $1 ORDER BY hash`, userID)
	if err != nil {
		return nil, fmt.Errorf("get totp of %s: %w", userID, err)
	}
	defer r.Close()
	t.RecoveryCodes = []string{}
	for r.Next() {
		var h string
		if err := r.Scan(&h); err != nil {
			return nil, fmt.Errorf("get totp of %s: %w", userID, err)
		}
		t.RecoveryCodes = append(t.RecoveryCodes, h)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("get totp of %s: %w", userID, err)
	}
	return &t, nil
}

// PutTOTP creates or replaces the user's second factor and its recovery
// codes.
func (s *sqlStore) PutTOTP(ctx context.Context, t *TOTP) error {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	err := s.e.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `INSERT INTO totp (user_id, secret, confirmed, last_step, created_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, confirmed = excluded.confirmed, last_step = excluded.last_step, created_at = excluded.created_at`,
			t.UserID, nonNil(t.Secret), b2i(t.Confirmed), t.LastStep, ts(t.CreatedAt)); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `DELETE FROM totp_recovery WHERE user_id = $1`, t.UserID); err != nil {
			return err
		}
		for _, h := range slices.Compact(slices.Sorted(slices.Values(t.RecoveryCodes))) {
			if _, err := q.exec(ctx, `INSERT INTO totp_recovery (user_id, hash) VALUES ($1, $2)`, t.UserID, h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put totp of %s: %w", t.UserID, err)
	}
	return nil
}

func (s *sqlStore) DeleteTOTP(ctx context.Context, userID string) error {
	n, err := s.e.exec(ctx, `DELETE FROM totp WHERE user_id = $1`, userID)
	if err != nil {
		return fmt.Errorf("delete totp of %s: %w", userID, err)
	}
	if n == 0 {
		return fmt.Errorf("delete totp of %s: %w", userID, ErrNotFound)
	}
	return nil
}

// AdvanceTOTPStep is one conditional UPDATE, atomic on both engines.
func (s *sqlStore) AdvanceTOTPStep(ctx context.Context, userID string, step int64) (bool, error) {
	n, err := s.e.exec(ctx, `UPDATE totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2`, userID, step)
	if err != nil {
		return false, fmt.Errorf("advance totp step of %s: %w", userID, err)
	}
	if n > 0 {
		return true, nil
	}
	if _, err := s.GetTOTP(ctx, userID); err != nil {
		return false, err
	}
	return false, nil
}

func (s *sqlStore) UseRecoveryCode(ctx context.Context, userID, hash string) (bool, error) {
	n, err := s.e.exec(ctx, `DELETE FROM totp_recovery WHERE user_id = $1 AND hash = $2`, userID, hash)
	if err != nil {
		return false, fmt.Errorf("use recovery code of %s: %w", userID, err)
	}
	return n > 0, nil
}

// ---- tokens ----

const tokenCols = `id, hash, user_id, name, created_at, expires_at, revoked_at, last_used, kind`

func scanToken(r row) (*Token, error) {
	var t Token
	var created, expires, revoked, used int64
	var kind string
	if err := r.Scan(&t.ID, &t.Hash, &t.UserID, &t.Name, &created, &expires, &revoked, &used, &kind); err != nil {
		return nil, err
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt, t.LastUsed = tm(created), tm(expires), tm(revoked), tm(used)
	t.Kind = TokenKind(kind)
	return &t, nil
}

// CreateToken stores a token, setting ID and CreatedAt when empty.
func (s *sqlStore) CreateToken(ctx context.Context, t *Token) error {
	if t.Hash == "" || t.UserID == "" {
		return fmt.Errorf("create token: hash and user id are required")
	}
	if t.ID == "" {
		t.ID = newID()
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	if t.Kind == "" {
		t.Kind = TokenPersonal
	}
	if t.Kind != TokenPersonal && t.Kind != TokenSetPassword {
		return fmt.Errorf("create token: unknown kind %q", t.Kind)
	}
	_, err := s.e.exec(ctx, `INSERT INTO tokens (`+tokenCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		t.ID, t.Hash, t.UserID, t.Name, ts(t.CreatedAt), ts(t.ExpiresAt), ts(t.RevokedAt), ts(t.LastUsed), string(t.Kind))
	if err != nil {
		if s.e.isDuplicate(err) {
			return fmt.Errorf("create token: %w", ErrDuplicate)
		}
		return fmt.Errorf("create token: %w", err)
	}
	return nil
}

func (s *sqlStore) GetTokenByHash(ctx context.Context, hash string) (*Token, error) {
	t, err := scanToken(s.e.queryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = $1`, hash))
	if err != nil {
		if noRows(err) {
			return nil, fmt.Errorf("token: %w", ErrNotFound)
		}
		return nil, fmt.Errorf("get token: %w", err)
	}
	return t, nil
}

func (s *sqlStore) ListTokens(ctx context.Context, userID string) ([]*Token, error) {
	r, err := s.e.query(ctx, `SELECT `+tokenCols+` FROM tokens WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer r.Close()
	var out []*Token
	for r.Next() {
		t, err := scanToken(r)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

func (s *sqlStore) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return s.updateOne(ctx, "revoke token", `UPDATE tokens SET revoked_at = CASE WHEN revoked_at = 0 THEN $2 ELSE revoked_at END WHERE id = $1`, id, ts(at))
}

func (s *sqlStore) TouchToken(ctx context.Context, id string, at time.Time) error {
	return s.updateOne(ctx, "touch token", `UPDATE tokens SET last_used = CASE WHEN last_used < $2 THEN $2 ELSE last_used END WHERE id = $1`, id, ts(at))
}

// updateOne runs an UPDATE that must hit a row.
func (s *sqlStore) updateOne(ctx context.Context, what, q string, args ...any) error {
	n, err := s.e.exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

// ---- signing keys ----

// AddSigningKey stores a key, setting ID and CreatedAt when empty.
func (s *sqlStore) AddSigningKey(ctx context.Context, k *SigningKey) error {
	if k.ID == "" {
		k.ID = newID()
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	_, err := s.e.exec(ctx, `INSERT INTO signing_keys (id, algorithm, public_key, private_key, created_at, retire_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		k.ID, k.Algorithm, nonNil(k.PublicKey), nonNil(k.PrivateKey), ts(k.CreatedAt), ts(k.RetireAt))
	if err != nil {
		if s.e.isDuplicate(err) {
			return fmt.Errorf("add signing key %s: %w", k.ID, ErrDuplicate)
		}
		return fmt.Errorf("add signing key %s: %w", k.ID, err)
	}
	return nil
}

// ListSigningKeys lists every key, oldest first.
func (s *sqlStore) ListSigningKeys(ctx context.Context) ([]*SigningKey, error) {
	r, err := s.e.query(ctx, `SELECT id, algorithm, public_key, private_key, created_at, retire_at FROM signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer r.Close()
	var out []*SigningKey
	for r.Next() {
		var k SigningKey
		var created, retire int64
		if err := r.Scan(&k.ID, &k.Algorithm, &k.PublicKey, &k.PrivateKey, &created, &retire); err != nil {
			return nil, fmt.Errorf("list signing keys: %w", err)
		}
		k.CreatedAt, k.RetireAt = tm(created), tm(retire)
		out = append(out, &k)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	return out, nil
}

func (s *sqlStore) RetireSigningKey(ctx context.Context, id string, at time.Time) error {
	return s.updateOne(ctx, "retire signing key "+id, `UPDATE signing_keys SET retire_at = $2 WHERE id = $1`, id, ts(at))
}

// DeleteSigningKey deletes a key, once every token it signed has expired.
func (s *sqlStore) DeleteSigningKey(ctx context.Context, id string) error {
	return s.updateOne(ctx, "delete signing key "+id, `DELETE FROM signing_keys WHERE id = $1`, id)
}

// ---- audit ----

// Audit appends e, setting its ID and, when zero, its Time.
func (s *sqlStore) Audit(ctx context.Context, e *AuditEvent) error {
	if e.Action == "" {
		return errors.New("audit: action is required")
	}
	if e.Time.IsZero() {
		e.Time = now()
	}
	err := s.e.inTx(ctx, func(q querier) error {
		return q.queryRow(ctx, `INSERT INTO audit_events (time, actor, action, subject, client_ip, detail) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			ts(e.Time), e.Actor, e.Action, e.Subject, e.ClientIP, e.Detail).Scan(&e.ID)
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// ListAudit lists matching events, newest first. Since is inclusive, Until
// exclusive; Limit 0 means no limit.
func (s *sqlStore) ListAudit(ctx context.Context, f AuditFilter) ([]*AuditEvent, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if !f.Since.IsZero() {
		add("time >= $%d", ts(f.Since))
	}
	if !f.Until.IsZero() {
		add("time < $%d", ts(f.Until))
	}
	if f.Actor != "" {
		add("actor = $%d", f.Actor)
	}
	if f.Subject != "" {
		add("subject = $%d", f.Subject)
	}
	if f.Action != "" {
		add("action = $%d", f.Action)
	}
	q := `SELECT id, time, actor, action, subject, client_ip, detail FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY time DESC, id DESC" + page(&args, f.Limit, f.Offset)
	r, err := s.e.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer r.Close()
	var out []*AuditEvent
	for r.Next() {
		var e AuditEvent
		var t int64
		if err := r.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.Subject, &e.ClientIP, &e.Detail); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		e.Time = tm(t)
		out = append(out, &e)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}
