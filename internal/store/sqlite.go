package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite settings. synchronous=FULL: in WAL mode every commit is fsynced
// before it returns, so a sign-out, a revocation or an audit event that moat
// reported done survives a power loss too (NORMAL only survives a process
// crash). moat writes little — sign-ins, revocations, audit — so the fsync
// per commit costs nothing that matters; session touches are batched by
// the caller.
const (
	sqliteBusyTimeoutMS = 10000
	sqliteSynchronous   = "FULL"
)

// sqliteEngine keeps one connection for writes, so writers in this process
// queue in Go instead of failing with SQLITE_BUSY, and a pool of read-only
// connections that WAL lets read while the writer writes. Writes from other
// processes (the CLI while serve runs) wait on busy_timeout; write
// transactions begin IMMEDIATE so they never fail upgrading a read lock.
type sqliteEngine struct {
	w, r *sql.DB
}

func sqliteDSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sqliteSynchronous+")")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	// SQLite decodes %XX in a URI filename and stops it at ? or #: escape
	// the path so any data_dir works.
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

func openSQLite(ctx context.Context, path string) (Store, error) {
	path = strings.TrimPrefix(path, "sqlite://")
	path = strings.TrimPrefix(path, "file:")
	if path == ":memory:" || strings.HasPrefix(path, ":memory:") {
		return nil, fmt.Errorf("open sqlite: an in-memory database is not supported (moat keeps separate read and write connections); use a file, such as one in t.TempDir()")
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
	}
	w, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	e := &sqliteEngine{w: w}
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// The file is created now: keep it to its owner (it holds password
	// hashes and encrypted keys).
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		_ = os.Chmod(f, 0o600)
	}
	if err := migrate(ctx, e, sqliteMigrations, nil); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0)*2)
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	e.r = r
	return &sqlStore{e: e}, nil
}

func (e *sqliteEngine) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return sqlQuerier{e.w}.exec(ctx, q, args...)
}

func (e *sqliteEngine) query(ctx context.Context, q string, args ...any) (rows, error) {
	return sqlQuerier{e.reader()}.query(ctx, q, args...)
}

func (e *sqliteEngine) queryRow(ctx context.Context, q string, args ...any) row {
	return sqlQuerier{e.reader()}.queryRow(ctx, q, args...)
}

// reader is the read pool, or the writer while migrations run.
func (e *sqliteEngine) reader() *sql.DB {
	if e.r == nil {
		return e.w
	}
	return e.r
}

func (e *sqliteEngine) inTx(ctx context.Context, fn func(q querier) error) error {
	tx, err := e.w.BeginTx(ctx, nil)
	if err != nil {
		return sqliteFault(err)
	}
	if err := fn(sqlQuerier{tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return sqliteFault(tx.Commit())
}

func (e *sqliteEngine) isDuplicate(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func (e *sqliteEngine) close() error {
	var err error
	if e.r != nil {
		err = e.r.Close()
	}
	return errors.Join(err, e.w.Close())
}
