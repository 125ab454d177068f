package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Open returns the store named by dsn: "postgres://…" or "postgresql://…"
// for PostgreSQL, anything else is a SQLite file path (the default is
// data_dir/moat.db). Migrations are applied before it returns.
func Open(ctx context.Context, dsn string) (Store, error) {
	if dsn == "" {
		return nil, fmt.Errorf("open store: no database given")
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return openPostgres(ctx, dsn)
	}
	return openSQLite(ctx, dsn)
}

// NormalizeEmail is the form emails are stored and looked up in: trimmed
// and lower-case, so Alice@Example.COM and alice@example.com are one user.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// RevokedRetention is how long DeleteExpiredSessions keeps a revoked,
// unexpired session, so every instance's RevokedSince poll sees it.
const RevokedRetention = time.Hour

// newID returns a random 128-bit identifier in hex.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("store: crypto/rand failed: " + err.Error()) // cannot happen on Linux
	}
	return hex.EncodeToString(b[:])
}

// now is the store's clock, at the microsecond precision it keeps.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// ts turns a time into the stored form: Unix microseconds, 0 for zero.
func ts(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// tm is the inverse of ts.
func tm(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
