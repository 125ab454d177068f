package store

import (
	"context"
	"fmt"
	"time"
)

// ---- failure counters ----

// CountFailure is one upsert, atomic on both engines (PostgreSQL locks the
// row for the conflict update; SQLite has one writer), so concurrent
// callers each get their own count. A count whose window has passed
// starts again at 1. Times only move forward, whatever the writers'
// clocks.
func (s *sqlStore) CountFailure(ctx context.Context, key string, window time.Duration) (Failures, error) {
	if key == "" || window <= 0 {
		return Failures{}, fmt.Errorf("count failure %q: a key and a positive window are required", key)
	}
	t := now()
	var f Failures
	err := s.e.inTx(ctx, func(q querier) error {
		var last, locked int64
		err := q.queryRow(ctx, `INSERT INTO failures (key, count, last_at, expires_at, locked_until) VALUES ($1, 1, $2, $3, 0)
			ON CONFLICT (key) DO UPDATE SET
				count = CASE WHEN failures.expires_at <= $2 THEN 1 ELSE failures.count + 1 END,
				last_at = CASE WHEN failures.last_at > $2 THEN failures.last_at ELSE $2 END,
				expires_at = CASE WHEN failures.expires_at > $3 THEN failures.expires_at ELSE $3 END
			RETURNING count, last_at, locked_until`,
			key, ts(t), ts(t.Add(window))).Scan(&f.Count, &last, &locked)
		if err != nil {
			return err
		}
		f.Last, f.LockedUntil = tm(last), lockedUntil(locked, t)
		return nil
	})
	if err != nil {
		return Failures{}, fmt.Errorf("count failure: %w", err)
	}
	return f, nil
}

// lockedUntil is the stored lock end, zero once it has passed.
func lockedUntil(v int64, now time.Time) time.Time {
	if v <= ts(now) {
		return time.Time{}
	}
	return tm(v)
}

func (s *sqlStore) GetFailures(ctx context.Context, key string) (Failures, error) {
	var count, last, expires, locked int64
	err := s.e.queryRow(ctx, `SELECT count, last_at, expires_at, locked_until FROM failures WHERE key = $1`, key).
		Scan(&count, &last, &expires, &locked)
	if noRows(err) {
		return Failures{}, nil
	}
	if err != nil {
		return Failures{}, fmt.Errorf("get failures: %w", err)
	}
	t := now()
	f := Failures{LockedUntil: lockedUntil(locked, t)}
	if expires > ts(t) {
		f.Count, f.Last = count, tm(last)
	}
	return f, nil
}

func (s *sqlStore) ResetFailures(ctx context.Context, key string) error {
	if _, err := s.e.exec(ctx, `UPDATE failures SET count = 0, last_at = 0, expires_at = 0 WHERE key = $1`, key); err != nil {
		return fmt.Errorf("reset failures: %w", err)
	}
	return nil
}

func (s *sqlStore) LockFailures(ctx context.Context, key string, d time.Duration) error {
	if key == "" || d <= 0 {
		return fmt.Errorf("lock failures %q: a key and a positive duration are required", key)
	}
	_, err := s.e.exec(ctx, `INSERT INTO failures (key, count, last_at, expires_at, locked_until) VALUES ($1, 0, 0, 0, $2)
		ON CONFLICT (key) DO UPDATE SET locked_until = CASE WHEN failures.locked_until > $2 THEN failures.locked_until ELSE $2 END`,
		key, ts(now().Add(d)))
	if err != nil {
		return fmt.Errorf("lock failures: %w", err)
	}
	return nil
}

func (s *sqlStore) UnlockFailures(ctx context.Context, key string) error {
	if _, err := s.e.exec(ctx, `DELETE FROM failures WHERE key = $1`, key); err != nil {
		return fmt.Errorf("unlock failures: %w", err)
	}
	return nil
}

func (s *sqlStore) DeleteExpiredFailures(ctx context.Context, before time.Time) (int, error) {
	n, err := s.e.exec(ctx, `DELETE FROM failures WHERE expires_at <= $1 AND locked_until <= $1`, ts(before))
	if err != nil {
		return 0, fmt.Errorf("delete expired failures: %w", err)
	}
	return int(n), nil
}
