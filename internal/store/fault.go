package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrUnavailable is returned (wrapped, with the database's own error) when
// the database could not be reached or did not answer in time: connection
// refused or reset, a timeout or a deadline that ran out waiting for it or
// for a free connection, a server shutting down or starting up, a locked
// or failing SQLite file. It is not ErrNotFound: the caller fails soft
// (a 503 with Retry-After, cached sessions kept for a bounded time) and
// never treats an outage as "no such session". The same call succeeds
// once the database is back; the store needs no restart.
var ErrUnavailable = errors.New("database unavailable")

// pgFault marks a PostgreSQL error that means the database is unreachable
// (see ErrUnavailable) and returns every other error unchanged.
func pgFault(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if pgUnreachable(err) {
		return unavailable(err)
	}
	return err
}

func pgUnreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection exception
			return true
		case pe.Code == "57P01", // admin_shutdown: the server is going down
			pe.Code == "57P02", // crash_shutdown: another backend crashed
			pe.Code == "57P03", // cannot_connect_now: starting up or shutting down
			pe.Code == "53300": // too_many_connections
			return true
		}
		// Any other SQLSTATE is an answer from a reachable server: a real
		// error (constraint, syntax, serialization…), unless it came while
		// connecting (below).
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	return pgconn.Timeout(err) || errors.Is(err, pgconn.ErrConnClosed) || netUnreachable(err)
}

// sqliteFault marks a SQLite error that means the database file cannot be
// used right now (see ErrUnavailable) and returns every other error
// unchanged. A constraint, a syntax error or a read-only connection asked
// to write is a real error.
func sqliteFault(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary result code
		case sqlite3.SQLITE_BUSY, // another process held the lock past busy_timeout
			sqlite3.SQLITE_LOCKED,
			sqlite3.SQLITE_IOERR, // the disk or file system failed
			sqlite3.SQLITE_FULL,
			sqlite3.SQLITE_CANTOPEN,
			sqlite3.SQLITE_PROTOCOL:
			return unavailable(err)
		}
		return err
	}
	if netUnreachable(err) {
		return unavailable(err)
	}
	return err
}

// netUnreachable is the part of the rule both engines share: a deadline
// that ran out (the caller's or a socket's) and a connection that was
// refused, reset or cut. A cancelled context is not an outage: the
// caller gave up.
func netUnreachable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

func unavailable(err error) error {
	return &unavailableError{err: err}
}

// unavailableError is ErrUnavailable with the database's own error, both
// reachable through errors.Is and errors.As.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string   { return ErrUnavailable.Error() + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// faultRows and faultRow mark the errors that surface while reading a
// result, not only when the query is sent.
type faultRows struct {
	rows
	fault func(error) error
}

func (r faultRows) Scan(dest ...any) error { return r.fault(r.rows.Scan(dest...)) }
func (r faultRows) Err() error             { return r.fault(r.rows.Err()) }

type faultRow struct {
	row
	fault func(error) error
}

func (r faultRow) Scan(dest ...any) error { return r.fault(r.row.Scan(dest...)) }
