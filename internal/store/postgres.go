package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationLockKey is the pg_advisory_lock key that serializes migrations
// when several instances start at once ("moat" in ASCII).
const migrationLockKey int64 = 0x6d6f6174

// pgConnectTimeout bounds one attempt to open a connection.
const pgConnectTimeout = 5 * time.Second

// pgEngine is PostgreSQL through a pgx connection pool.
type pgEngine struct {
	pool *pgxpool.Pool
}

func openPostgres(ctx context.Context, dsn string) (Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The error may quote the DSN with its password: say less.
		return nil, fmt.Errorf("open postgres: invalid connection string")
	}
	if !strings.Contains(dsn, "connect_timeout") {
		// Without a bound, connecting to a server that drops packets
		// waits for the kernel's TCP timeout (minutes); every caller has
		// a deadline, but a new connection must fail fast enough to let
		// it answer 503 in time. connect_timeout overrides.
		cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgxpool's default (4 on 2 cores) queues a busy instance's
		// session checks behind one another; pool_max_conns overrides.
		cfg.MaxConns = int32(max(16, 4*runtime.GOMAXPROCS(0)))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres %s: %w", cfg.ConnConfig.Host, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, pgFault(err))
	}
	e := &pgEngine{pool: pool}
	lock := func(ctx context.Context) (func(), error) {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
			conn.Release()
			return nil, fmt.Errorf("take migration lock: %w", err)
		}
		return func() {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey)
			conn.Release()
		}, nil
	}
	if err := migrate(ctx, e, postgresMigrations, lock); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return &sqlStore{e: e}, nil
}

type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgq runs statements on a pool or a transaction; its errors go through
// pgFault.
type pgq struct{ q pgQuerier }

func (p pgq) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := p.q.Exec(ctx, q, args...)
	if err != nil {
		return 0, pgFault(err)
	}
	return tag.RowsAffected(), nil
}

func (p pgq) query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := p.q.Query(ctx, q, args...)
	if err != nil {
		return nil, pgFault(err)
	}
	return faultRows{r, pgFault}, nil
}

func (p pgq) queryRow(ctx context.Context, q string, args ...any) row {
	return faultRow{p.q.QueryRow(ctx, q, args...), pgFault}
}

func (e *pgEngine) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return pgq{e.pool}.exec(ctx, q, args...)
}

func (e *pgEngine) query(ctx context.Context, q string, args ...any) (rows, error) {
	return pgq{e.pool}.query(ctx, q, args...)
}

func (e *pgEngine) queryRow(ctx context.Context, q string, args ...any) row {
	return pgq{e.pool}.queryRow(ctx, q, args...)
}

func (e *pgEngine) inTx(ctx context.Context, fn func(q querier) error) error {
	return pgFault(pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return fn(pgq{tx}) }))
}

func (e *pgEngine) isDuplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func (e *pgEngine) close() error {
	e.pool.Close()
	return nil
}
