package fanout

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgreSQL settings.
const (
	// pgChannel is the NOTIFY channel. Notifications stay within one
	// database, so two moat clusters on one server do not hear each other.
	pgChannel = "moat_events"
	// pgIdlePing is how long the listener waits for a notification before
	// it checks that its connection still works: a connection cut without
	// a reset (a dropped network path) is noticed within about this long.
	pgIdlePing = 10 * time.Second
	// pgCallTimeout bounds a connection attempt and a ping.
	pgCallTimeout = 5 * time.Second
)

// pgTransport listens on a dedicated connection of its own (LISTEN holds
// it) and publishes through a small pool.
type pgTransport struct {
	cfg    *pgx.ConnConfig
	pool   *pgxpool.Pool
	bus    *Bus
	logger *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// NewPostgres returns a bus over PostgreSQL's LISTEN/NOTIFY on the
// database dsn names. It tries to connect once before it returns (within
// ctx); when that fails it keeps trying in the background and sends a
// Resync once it listens.
func NewPostgres(ctx context.Context, dsn string, logger *slog.Logger) (*Bus, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("fanout: invalid PostgreSQL connection string") // never echo: it may hold a password
	}
	if !strings.Contains(dsn, "connect_timeout") {
		cfg.ConnectTimeout = pgCallTimeout
	}
	pool, err := pgPool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	b := newBus(logger)
	runCtx, cancel := context.WithCancel(context.Background())
	t := &pgTransport{cfg: cfg, pool: pool, bus: b, logger: b.logger, cancel: cancel, done: make(chan struct{})}
	b.t = t
	conn, err := t.connect(ctx)
	if err != nil {
		t.logger.Warn("fanout: cannot listen on PostgreSQL yet; retrying in the background", "error", err)
	}
	go t.run(runCtx, conn)
	return b, nil
}

// pgPool is the small pool events are published through; it connects
// lazily.
func pgPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("fanout: invalid PostgreSQL connection string") // never echo: it may hold a password
	}
	if !strings.Contains(dsn, "connect_timeout") {
		pcfg.ConnConfig.ConnectTimeout = pgCallTimeout
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		pcfg.MaxConns = 2 // events are few and small
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, errors.New("fanout: invalid PostgreSQL settings")
	}
	return pool, nil
}

// pgPublisher publishes and listens to nothing (OpenPublisher).
type pgPublisher struct{ pool *pgxpool.Pool }

func (t *pgPublisher) publish(ctx context.Context, payload string) error {
	return pgNotify(ctx, t.pool, payload)
}

func (t *pgPublisher) close() error {
	t.pool.Close()
	return nil
}

// pgNotify sends payload on the events channel.
func pgNotify(ctx context.Context, pool *pgxpool.Pool, payload string) error {
	_, err := pool.Exec(ctx, "SELECT pg_notify($1, $2)", pgChannel, payload)
	return err
}

// connect opens the listening connection.
func (t *pgTransport) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, pgCallTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, t.cfg.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgChannel); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// run listens until ctx ends, reconnecting with backoff. conn is the
// connection NewPostgres opened, or nil when it could not: then, as after
// every lost connection, subscribers get a Resync once LISTEN is back.
func (t *pgTransport) run(ctx context.Context, conn *pgx.Conn) {
	defer close(t.done)
	gap := conn == nil
	var bo backoff
	for {
		if conn == nil {
			if !sleep(ctx, bo.next()) {
				return
			}
			c, err := t.connect(ctx)
			if err != nil {
				t.logger.Debug("fanout: reconnect to PostgreSQL failed", "error", err)
				continue
			}
			conn = c
			bo.reset()
			t.logger.Info("fanout: listening on PostgreSQL again")
		}
		if gap {
			t.bus.resync()
			gap = false
		}
		err := t.listen(ctx, conn)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx)
		cancel()
		conn = nil
		if ctx.Err() != nil {
			return
		}
		gap = true
		t.logger.Warn("fanout: lost the PostgreSQL connection; events wait for the poll until it is back", "error", err)
	}
}

// listen delivers notifications until the connection fails or ctx ends.
func (t *pgTransport) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, pgIdlePing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if n.Channel == pgChannel {
				t.bus.receive(n.Payload)
			}
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, pgCallTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
		}
		return err
	}
}

func (t *pgTransport) publish(ctx context.Context, payload string) error {
	return pgNotify(ctx, t.pool, payload)
}

func (t *pgTransport) close() error {
	t.cancel()
	<-t.done
	t.pool.Close()
	return nil
}
