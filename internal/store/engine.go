package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jackc/pgx/v5"
)

// querier is what both engines offer: SQL with $1-style placeholders (the
// SQLite driver accepts them too), so one body of SQL serves both.
type querier interface {
	exec(ctx context.Context, q string, args ...any) (int64, error) // rows affected
	query(ctx context.Context, q string, args ...any) (rows, error)
	queryRow(ctx context.Context, q string, args ...any) row
}

// engine is a database: a querier plus transactions.
type engine interface {
	querier
	// inTx runs fn in a write transaction, committing when it returns nil.
	inTx(ctx context.Context, fn func(q querier) error) error
	// isDuplicate reports whether err is a unique constraint violation.
	isDuplicate(err error) bool
	close() error
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

type row interface {
	Scan(dest ...any) error
}

// noRows reports whether err means the query matched nothing.
func noRows(err error) bool {
	return errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows)
}

// sqlRows adapts *sql.Rows to rows.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// sqlQuerier runs statements on a database/sql handle (a *sql.DB or *sql.Tx):
// SQLite's, so its errors go through sqliteFault.
type sqlQuerier struct {
	db interface {
		ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	}
}

func (s sqlQuerier) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, sqliteFault(err)
	}
	n, err := res.RowsAffected()
	return n, sqliteFault(err)
}

func (s sqlQuerier) query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, sqliteFault(err)
	}
	return faultRows{sqlRows{r}, sqliteFault}, nil
}

func (s sqlQuerier) queryRow(ctx context.Context, q string, args ...any) row {
	return faultRow{s.db.QueryRowContext(ctx, q, args...), sqliteFault}
}
