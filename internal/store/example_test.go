package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// A user signs in, an admin disables them, and every instance learns which
// sessions to cut off.
func Example() {
	dir, _ := os.MkdirTemp("", "moat-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "moat.db")) // or "postgres://…"
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()

	u := &store.User{Email: "Alice@Example.com", Groups: []string{"staff"}}
	_ = st.CreateUser(ctx, u)
	_ = st.CreateSession(ctx, &store.Session{IDHash: "sha256-of-cookie", UserID: u.ID, Provider: "password", ExpiresAt: time.Now().Add(time.Hour)})

	lastPoll := time.Now().Add(-time.Second)
	u.Disabled = true
	_ = st.UpdateUser(ctx, u)
	_, _ = st.RevokeUserSessions(ctx, u.ID, time.Now())
	revoked, _ := st.RevokedSince(ctx, lastPoll)

	err = st.CreateUser(ctx, &store.User{Email: "ALICE@example.com"})
	fmt.Println(u.Email, revoked, errors.Is(err, store.ErrDuplicate))
	// Output: alice@example.com [sha256-of-cookie] true
}

// An admin disables a user: the change and its audit event are stored
// together, or neither is.
func ExampleStore_InTx() {
	dir, _ := os.MkdirTemp("", "moat-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "moat.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	u := &store.User{Email: "alice@example.com"}
	_ = st.CreateUser(ctx, u)

	err = st.InTx(ctx, func(tx store.Tx) error {
		u.Disabled = true
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		if _, err := tx.RevokeUserSessions(ctx, u.ID, time.Now()); err != nil {
			return err
		}
		return tx.Audit(ctx, &store.AuditEvent{Actor: "admin@example.com", Action: "user.disable", Subject: u.Email})
	})
	events, _ := st.ListAudit(ctx, store.AuditFilter{Subject: u.Email})
	fmt.Println(err, len(events), events[0].Action)
	// Output: <nil> 1 user.disable
}
