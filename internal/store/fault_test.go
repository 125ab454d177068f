package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testwait"
)

// outageCall bounds each call made while the database is down: an
// unreachable database must be reported, not waited for.
const outageCall = 3 * time.Second

// storeCalls are the calls a request makes, each to be told apart from
// "not found" while the database is down.
var storeCalls = []struct {
	name string
	call func(ctx context.Context, s store.Store, userID string) error
}{
	{"read a session", func(ctx context.Context, s store.Store, _ string) error {
		_, err := s.GetSession(ctx, "no-such-session")
		return err
	}},
	{"read a user", func(ctx context.Context, s store.Store, id string) error {
		_, err := s.GetUser(ctx, id)
		return err
	}},
	{"list sessions", func(ctx context.Context, s store.Store, id string) error {
		_, err := s.ListSessions(ctx, id)
		return err
	}},
	{"revoke a session", func(ctx context.Context, s store.Store, _ string) error {
		return s.RevokeSession(ctx, "no-such-session", time.Now())
	}},
	{"count a failure", func(ctx context.Context, s store.Store, _ string) error {
		_, err := s.CountFailure(ctx, "account:alice", time.Minute)
		return err
	}},
	{"change a user with its audit event", func(ctx context.Context, s store.Store, id string) error {
		return s.InTx(ctx, func(tx store.Tx) error {
			if err := tx.RecordLogin(ctx, id, time.Now()); err != nil {
				return err
			}
			return tx.Audit(ctx, &store.AuditEvent{Action: "login.success"})
		})
	}},
}

// TestPostgresOutageIsErrUnavailableAndThePoolRecovers stops a real
// PostgreSQL under a store with a warm pool (a fast shutdown, as for an
// upgrade, and a crash): every call fails with ErrUnavailable, never
// ErrNotFound, and within outageCall; when the server is back the same
// store works again, and the test reports how long that took.
func TestPostgresOutageIsErrUnavailableAndThePoolRecovers(t *testing.T) {
	srv := storetest.NewServer(t)
	s, err := store.Open(t.Context(), srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := &store.User{Email: "alice@example.com"}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	for _, outage := range []struct {
		name string
		stop func(testing.TB)
	}{
		{"fast shutdown", srv.Stop},
		{"crash", srv.Crash},
	} {
		t.Run(outage.name, func(t *testing.T) {
			warm(t, s, u.ID)
			outage.stop(t)
			// The first calls find pooled connections the server closed,
			// the later ones a port that refuses connections.
			for round := range 3 {
				for _, c := range storeCalls {
					ctx, cancel := context.WithTimeout(context.Background(), outageCall)
					start := time.Now()
					err := c.call(ctx, s, u.ID)
					cancel()
					if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
						t.Errorf("%s while the database is down: err = %v, want ErrUnavailable", c.name, err)
					}
					if round != 1 {
						t.Logf("%s: %v after %v", c.name, err, time.Since(start).Round(time.Millisecond))
					}
				}
			}
			restart := time.Now()
			srv.Start(t)
			up := time.Now()
			testwait.For(t, 30*time.Second, "the store answering again", func() bool {
				_, err := s.GetUser(context.Background(), u.ID)
				return err == nil
			})
			t.Logf("%s: the store answered again %v after the server accepted connections (%v after it was started)",
				outage.name, time.Since(up).Round(time.Millisecond), time.Since(restart).Round(time.Millisecond))
			// Every pooled connection, not just one, works again.
			warm(t, s, u.ID)
			for _, c := range storeCalls {
				if err := c.call(t.Context(), s, u.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s after recovery: %v", c.name, err)
				}
			}
		})
	}
}

// TestPostgresShutdownDuringATransactionIsErrUnavailable: a transaction
// open when the server shuts down fails with ErrUnavailable and keeps
// nothing.
func TestPostgresShutdownDuringATransactionIsErrUnavailable(t *testing.T) {
	srv := storetest.NewServer(t)
	s, err := store.Open(t.Context(), srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.InTx(t.Context(), func(tx store.Tx) error {
		if err := tx.CreateUser(t.Context(), &store.User{Email: "alice@example.com"}); err != nil {
			return err
		}
		srv.Stop(t)
		return tx.Audit(t.Context(), &store.AuditEvent{Action: "user.create", Subject: "alice@example.com"})
	})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	srv.Start(t)
	testwait.For(t, 30*time.Second, "the store answering again", func() bool {
		_, err := s.GetUserByEmail(context.Background(), "alice@example.com")
		if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrUnavailable) {
			t.Fatal(err)
		}
		return errors.Is(err, store.ErrNotFound)
	})
}

// TestPostgresUnreachableAtOpenIsErrUnavailable: a store that cannot be
// reached at start says so, with ErrUnavailable.
func TestPostgresUnreachableAtOpenIsErrUnavailable(t *testing.T) {
	srv := storetest.NewServer(t)
	srv.Stop(t)
	ctx, cancel := context.WithTimeout(t.Context(), outageCall)
	defer cancel()
	_, err := store.Open(ctx, srv.DSN())
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

// TestSQLiteLockedPastTheDeadlineIsErrUnavailable: another process holds
// the SQLite write lock longer than the caller can wait; the write fails
// with ErrUnavailable when the caller's deadline runs out, and works once
// the lock is released.
func TestSQLiteLockedPastTheDeadlineIsErrUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	s, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = s.CreateUser(ctx, &store.User{Email: "alice@example.com"})
	t.Logf("a write behind another process's lock: %v", err)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a write behind another process's lock: err = %v, want ErrUnavailable", err)
	}
	if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(t.Context(), &store.User{Email: "alice@example.com"}); err != nil {
		t.Fatalf("after the lock was released: %v", err)
	}
}

// TestAnswersAreNotErrUnavailable: what the database answers is never
// mistaken for an outage, on either engine.
func TestAnswersAreNotErrUnavailable(t *testing.T) {
	for name, open := range map[string]func(*testing.T) store.Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			_, err := s.GetUser(t.Context(), "nobody")
			if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("unknown user: %v", err)
			}
			_ = s.CreateUser(t.Context(), &store.User{Email: "a@example.com"})
			err = s.CreateUser(t.Context(), &store.User{Email: "a@example.com"})
			if !errors.Is(err, store.ErrDuplicate) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("duplicate: %v", err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := s.GetSession(ctx, "x"); errors.Is(err, store.ErrUnavailable) {
				t.Errorf("a caller that gave up is not an outage: %v", err)
			}
		})
	}
}

// warm uses several pooled connections at once, so an outage finds them
// open.
func warm(t *testing.T, s store.Store, userID string) {
	t.Helper()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.GetUser(context.Background(), userID); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
