package attempts

import (
	"context"
	"fmt"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// Store is a Counter in moat's database (the failures table): every
// instance on one PostgreSQL shares the counts, and with SQLite they
// survive the instance's restarts. Each operation is one statement.
type Store struct {
	st store.Store
}

// NewStore returns a Counter kept in st.
func NewStore(st store.Store) *Store { return &Store{st: st} }

// Fail implements Counter.
func (s *Store) Fail(ctx context.Context, key string, window time.Duration) (State, error) {
	if err := checkArgs("count failure", key, window); err != nil {
		return State{}, err
	}
	f, err := s.st.CountFailure(ctx, storedKey(key), window)
	if err != nil {
		return State{}, storeFault(err)
	}
	return stateOf(f), nil
}

// Get implements Counter.
func (s *Store) Get(ctx context.Context, key string) (State, error) {
	f, err := s.st.GetFailures(ctx, storedKey(key))
	if err != nil {
		return State{}, storeFault(err)
	}
	return stateOf(f), nil
}

// Reset implements Counter.
func (s *Store) Reset(ctx context.Context, key string) error {
	return storeFault(s.st.ResetFailures(ctx, storedKey(key)))
}

// Lock implements Counter.
func (s *Store) Lock(ctx context.Context, key string, d time.Duration) error {
	if err := checkArgs("lock", key, d); err != nil {
		return err
	}
	return storeFault(s.st.LockFailures(ctx, storedKey(key), d))
}

// Unlock implements Counter.
func (s *Store) Unlock(ctx context.Context, key string) error {
	return storeFault(s.st.UnlockFailures(ctx, storedKey(key)))
}

// Sweep implements Counter.
func (s *Store) Sweep(ctx context.Context) error {
	_, err := s.st.DeleteExpiredFailures(ctx, time.Now())
	return storeFault(err)
}

// stateOf turns the store's times (this instance's clock) into durations.
func stateOf(f store.Failures) State {
	now := time.Now()
	s := State{Count: f.Count}
	if f.Count > 0 {
		s.SinceLast = max(0, now.Sub(f.Last))
	}
	if !f.LockedUntil.IsZero() {
		s.Locked = max(0, f.LockedUntil.Sub(now))
	}
	return s
}

// storeFault marks every store error as ErrUnavailable: whether the
// database is down or refused the statement, the counts are unknown.
func storeFault(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
