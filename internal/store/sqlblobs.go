package store

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

// ---- blobs ----

func (s *sqlStore) PutBlob(ctx context.Context, key string, value []byte) error {
	if key == "" {
		return fmt.Errorf("put blob: key is empty")
	}
	if len(value) > MaxBlobBytes {
		return fmt.Errorf("put blob %s: %d bytes, more than the %d a blob may hold", key, len(value), MaxBlobBytes)
	}
	_, err := s.e.exec(ctx, `INSERT INTO blobs (key, value, modified) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, modified = excluded.modified`,
		key, nonNil(value), ts(now()))
	if err != nil {
		return fmt.Errorf("put blob %s: %w", key, err)
	}
	return nil
}

func (s *sqlStore) GetBlob(ctx context.Context, key string) ([]byte, time.Time, error) {
	var value []byte
	var modified int64
	err := s.e.queryRow(ctx, `SELECT value, modified FROM blobs WHERE key = $1`, key).Scan(&value, &modified)
	if err != nil {
		if noRows(err) {
			return nil, time.Time{}, fmt.Errorf("blob %s: %w", key, ErrNotFound)
		}
		return nil, time.Time{}, fmt.Errorf("get blob %s: %w", key, err)
	}
	return nonNil(value), tm(modified), nil
}

// ListBlobs compares a leading substring rather than using LIKE, whose
// wildcards would need escaping and whose index use differs by engine and
// collation; there are a few dozen blobs per routed host at most.
func (s *sqlStore) ListBlobs(ctx context.Context, prefix string) ([]BlobInfo, error) {
	r, err := s.e.query(ctx, `SELECT key, length(value), modified FROM blobs WHERE substr(key, 1, $2) = $1 ORDER BY key`,
		prefix, utf8.RuneCountInString(prefix))
	if err != nil {
		return nil, fmt.Errorf("list blobs %s: %w", prefix, err)
	}
	defer r.Close()
	var out []BlobInfo
	for r.Next() {
		var b BlobInfo
		var modified int64
		if err := r.Scan(&b.Key, &b.Size, &modified); err != nil {
			return nil, fmt.Errorf("list blobs %s: %w", prefix, err)
		}
		b.Modified = tm(modified)
		out = append(out, b)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("list blobs %s: %w", prefix, err)
	}
	return out, nil
}

func (s *sqlStore) DeleteBlobs(ctx context.Context, key string) (int, error) {
	dir := key + "/"
	n, err := s.e.exec(ctx, `DELETE FROM blobs WHERE key = $1 OR substr(key, 1, $3) = $2`,
		key, dir, utf8.RuneCountInString(dir))
	if err != nil {
		return 0, fmt.Errorf("delete blobs %s: %w", key, err)
	}
	return int(n), nil
}

// ---- locks ----

// TryLock is one statement: an insert that, on conflict, takes the row
// over only when it is the owner's or its lease has run out. Leases are
// compared on each instance's clock, so clocks must agree to well within
// ttl.
func (s *sqlStore) TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if name == "" || owner == "" || ttl <= 0 {
		return false, fmt.Errorf("lock %q: name, owner and a positive lease are required", name)
	}
	t := now()
	n, err := s.e.exec(ctx, `INSERT INTO locks (name, owner, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		WHERE locks.owner = excluded.owner OR locks.expires_at <= $4`,
		name, owner, ts(t.Add(ttl)), ts(t))
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", name, err)
	}
	return n > 0, nil
}

func (s *sqlStore) RefreshLock(ctx context.Context, name, owner string, ttl time.Duration) error {
	return s.updateOne(ctx, "refresh lock "+name, `UPDATE locks SET expires_at = $3 WHERE name = $1 AND owner = $2`,
		name, owner, ts(now().Add(ttl)))
}

func (s *sqlStore) Unlock(ctx context.Context, name, owner string) error {
	if _, err := s.e.exec(ctx, `DELETE FROM locks WHERE name = $1 AND owner = $2`, name, owner); err != nil {
		return fmt.Errorf("unlock %s: %w", name, err)
	}
	return nil
}
