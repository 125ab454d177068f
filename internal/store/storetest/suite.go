package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/store"
)

// Factory opens a new, empty store for one test; the suite closes it.
type Factory func(t *testing.T) store.Store

// Run is the conformance suite: every engine must pass all of it. Its
// tests run in parallel, each on a store of its own from open.
func Run(t *testing.T, open Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"users are created with an id and a normalized email", testCreateUser},
		{"a duplicate email is refused whatever its case", testDuplicateEmail},
		{"an unknown user is ErrNotFound", testUnknownUser},
		{"groups are stored, listed and replaced", testGroups},
		{"users are listed by query and group with a total", testListUsers},
		{"an update changes every field but id and creation time", testUpdateUser},
		{"an update of a stale read is a conflict", testUpdateConflict},
		{"logins and password changes do not clobber other changes", testRecordLoginAndSetPassword},
		{"deleting a user removes its data and revokes its sessions", testDeleteUser},
		{"sessions round-trip and are touched", testSessions},
		{"revoking a user's sessions reports them to every instance", testRevokeUserSessions},
		{"expired sessions are deleted", testDeleteExpiredSessions},
		{"a TOTP step is accepted once and never again", testTOTPStep},
		{"concurrent uses of one TOTP step accept exactly one", testTOTPConcurrent},
		{"a recovery code works once", testRecoveryCode},
		{"tokens are found by hash, touched and revoked", testTokens},
		{"signing keys are added, listed, retired and deleted", testSigningKeys},
		{"audit events are filtered and paged newest first", testAudit},
		{"concurrent writers all succeed", testConcurrentWriters},
		{"passkeys are stored per user, found by credential id and deleted", testPasskeys},
		{"a passkey's signature counter only moves forward", testPasskeyCounter},
		{"concurrent uses of one passkey counter accept exactly one", testPasskeyCounterConcurrent},
		{"a single-use token is spent once, also under concurrency", testUseOnce},
		{"single-use tokens of different kinds never collide", testUseOnceKinds},
		{"blobs are stored, listed by prefix and deleted with what lies under them", testBlobs},
		{"a lock has one owner until it is released or its lease runs out", testLocks},
		{"of many instances racing for a lock exactly one gets it", testLockRace},
		{"a directory change commits together with its audit event", testChangeCommitsWithItsAudit},
		{"a directory change whose audit fails is rolled back", testChangeRollsBackWithItsAudit},
		{"a transaction reads its own writes and no one else does before it commits", testTxSeesItsOwnWrites},
		{"failures are counted, reset, locked and unlocked", testFailures},
		{"failures and locks run out and are swept", testFailureWindow},
		{"callers counting one key at once each get a count of their own", testFailureRace},
		{"usage from several instances adds up", testUsageInstancesAddUp},
		{"usage is read by route and period", testUsageFilters},
		{"usage older than the retention is deleted", testUsageRetention},
		{"concurrent usage writers add up exactly", testUsageConcurrentWriters},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Each test has its own database, so they run side by side:
			// creating a PostgreSQL database is slow, not busy.
			t.Parallel()
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

func mustUser(t *testing.T, s store.Store, email string, groups ...string) *store.User {
	t.Helper()
	u := &store.User{Email: email, Name: "Name of " + email, Groups: groups, PasswordHash: "$argon2id$x"}
	if err := s.CreateUser(ctx(t), u); err != nil {
		t.Fatalf("create user %s: %v", email, err)
	}
	return u
}

func testCreateUser(t *testing.T, s store.Store) {
	u := mustUser(t, s, "  Alice@Example.COM ", "staff")
	if u.ID == "" || len(u.ID) < 32 {
		t.Errorf("id = %q, want a random 128-bit id", u.ID)
	}
	if u.Email != "alice@example.com" {
		t.Errorf("email = %q, want it normalized", u.Email)
	}
	if u.CreatedAt.IsZero() || !u.CreatedAt.Equal(u.UpdatedAt) {
		t.Errorf("timestamps not set: %v %v", u.CreatedAt, u.UpdatedAt)
	}
	got, err := s.GetUserByEmail(ctx(t), "ALICE@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != u.ID || got.Name != u.Name || got.PasswordHash != u.PasswordHash || !slices.Equal(got.Groups, []string{"staff"}) ||
		!got.CreatedAt.Equal(u.CreatedAt) || !got.LastLoginAt.IsZero() || got.Disabled || got.MustChangePassword {
		t.Errorf("got %+v, want %+v", got, u)
	}
	byID, err := s.GetUser(ctx(t), u.ID)
	if err != nil || byID.Email != u.Email {
		t.Errorf("GetUser = %+v, %v", byID, err)
	}
	other := mustUser(t, s, "bob@example.com")
	if other.ID == u.ID {
		t.Error("two users got one id")
	}
}

func testDuplicateEmail(t *testing.T, s store.Store) {
	mustUser(t, s, "alice@example.com")
	err := s.CreateUser(ctx(t), &store.User{Email: "ALICE@Example.com"})
	if !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("err = %v, want ErrDuplicate", err)
	}
	bob := mustUser(t, s, "bob@example.com")
	bob.Email = "Alice@example.com"
	if err := s.UpdateUser(ctx(t), bob); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("renaming onto an existing email: err = %v, want ErrDuplicate", err)
	}
	if err := s.CreateUser(ctx(t), &store.User{Email: "  "}); err == nil {
		t.Error("an empty email was accepted")
	}
}

func testUnknownUser(t *testing.T, s store.Store) {
	for name, err := range map[string]error{
		"GetUser":        second(s.GetUser(ctx(t), "nope")),
		"GetUserByEmail": second(s.GetUserByEmail(ctx(t), "nobody@example.com")),
		"UpdateUser":     s.UpdateUser(ctx(t), &store.User{ID: "nope", Email: "x@example.com"}),
		"DeleteUser":     s.DeleteUser(ctx(t), "nope"),
		"GetTOTP":        second(s.GetTOTP(ctx(t), "nope")),
		"GetSession":     second(s.GetSession(ctx(t), "nope")),
		"TouchSession":   s.TouchSession(ctx(t), "nope", time.Now()),
		"RevokeSession":  s.RevokeSession(ctx(t), "nope", time.Now()),
		"GetTokenByHash": second(s.GetTokenByHash(ctx(t), "nope")),
		"RevokeToken":    s.RevokeToken(ctx(t), "nope", time.Now()),
		"RetireKey":      s.RetireSigningKey(ctx(t), "nope", time.Now()),
	} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func testGroups(t *testing.T, s store.Store) {
	a := mustUser(t, s, "a@example.com", "ops", " staff", "ops", "")
	mustUser(t, s, "b@example.com", "staff")
	mustUser(t, s, "c@example.com")
	if !slices.Equal(a.Groups, []string{"ops", "staff"}) {
		t.Errorf("groups = %q, want cleaned and sorted", a.Groups)
	}
	g, err := s.ListGroups(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"ops": {"a@example.com"}, "staff": {"a@example.com", "b@example.com"}}
	if fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("ListGroups = %v, want %v", g, want)
	}
	a.Groups = []string{"admins"}
	if err := s.UpdateUser(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetUser(ctx(t), a.ID)
	if !slices.Equal(got.Groups, []string{"admins"}) {
		t.Errorf("after set: groups = %q", got.Groups)
	}
	a.Groups = nil
	if err := s.UpdateUser(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetUser(ctx(t), a.ID)
	if len(got.Groups) != 0 {
		t.Errorf("after clearing: groups = %q", got.Groups)
	}
}

func testListUsers(t *testing.T, s store.Store) {
	for i := range 5 {
		g := "even"
		if i%2 == 1 {
			g = "odd"
		}
		mustUser(t, s, fmt.Sprintf("user%d@example.com", i), g)
	}
	weird := mustUser(t, s, "percent%_@example.com")
	all, total, err := s.ListUsers(ctx(t), store.UserFilter{})
	if err != nil || total != 6 || len(all) != 6 || all[0].Email != "percent%_@example.com" {
		t.Fatalf("all: %d users, total %d, err %v", len(all), total, err)
	}
	pageUsers, total, err := s.ListUsers(ctx(t), store.UserFilter{Limit: 2, Offset: 2})
	if err != nil || total != 6 || len(pageUsers) != 2 || pageUsers[0].Email != "user1@example.com" {
		t.Fatalf("page: %v, total %d, err %v", emails(pageUsers), total, err)
	}
	odd, total, err := s.ListUsers(ctx(t), store.UserFilter{Group: "odd"})
	if err != nil || total != 2 || !slices.Equal(emails(odd), []string{"user1@example.com", "user3@example.com"}) {
		t.Fatalf("odd: %v, total %d, err %v", emails(odd), total, err)
	}
	if !slices.Equal(odd[0].Groups, []string{"odd"}) {
		t.Errorf("listed users carry their groups: %q", odd[0].Groups)
	}
	q, total, err := s.ListUsers(ctx(t), store.UserFilter{Query: "NAME OF USER4"})
	if err != nil || total != 1 || q[0].Email != "user4@example.com" {
		t.Fatalf("query: %v, total %d, err %v", emails(q), total, err)
	}
	lit, _, err := s.ListUsers(ctx(t), store.UserFilter{Query: "%_"})
	if err != nil || !slices.Equal(emails(lit), []string{weird.Email}) {
		t.Fatalf("LIKE wildcards are literal: %v, %v", emails(lit), err)
	}
}

func emails(us []*store.User) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Email)
	}
	return out
}

func testUpdateUser(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	created := u.CreatedAt
	time.Sleep(2 * time.Millisecond)
	login := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	u.Name, u.Disabled, u.MustChangePassword, u.PasswordHash, u.LastLoginAt = "Alice B.", true, true, "$argon2id$new", login
	u.Email = "Alice.B@example.com"
	if err := s.UpdateUser(ctx(t), u); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetUser(ctx(t), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Alice B." || !got.Disabled || !got.MustChangePassword || got.PasswordHash != "$argon2id$new" ||
		!got.LastLoginAt.Equal(login) || got.Email != "alice.b@example.com" || !got.CreatedAt.Equal(created) || !got.UpdatedAt.After(created) {
		t.Errorf("got %+v", got)
	}
}

func testDeleteUser(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com", "staff")
	keep := mustUser(t, s, "bob@example.com", "staff")
	exp := time.Now().Add(time.Hour)
	for _, h := range []string{"s1", "s2"} {
		if err := s.CreateSession(ctx(t), &store.Session{IDHash: h, UserID: u.ID, Email: u.Email, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSession(ctx(t), &store.Session{IDHash: "s3", UserID: keep.ID, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTOTP(ctx(t), &store.TOTP{UserID: u.ID, Secret: []byte("x"), RecoveryCodes: []string{"r1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx(t), &store.Token{Hash: "th", UserID: u.ID}); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	if err := s.DeleteUser(ctx(t), u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUser(ctx(t), u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user still there: %v", err)
	}
	if _, err := s.GetTOTP(ctx(t), u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("totp still there: %v", err)
	}
	if _, err := s.GetTokenByHash(ctx(t), "th"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("token still there: %v", err)
	}
	if g, _ := s.ListGroups(ctx(t)); !slices.Equal(g["staff"], []string{"bob@example.com"}) {
		t.Errorf("groups = %v", g)
	}
	live, _ := s.ListSessions(ctx(t), "")
	if len(live) != 1 || live[0].IDHash != "s3" {
		t.Errorf("live sessions = %v, want only the other user's", live)
	}
	revoked, err := s.RevokedSince(ctx(t), before)
	if err != nil || !slices.Equal(sorted(revoked), []string{"s1", "s2"}) {
		t.Errorf("RevokedSince = %v, %v: the deleted user's sessions must be reported", revoked, err)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

func testSessions(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	x := &store.Session{IDHash: "h1", UserID: u.ID, Email: u.Email, Provider: "google", Groups: []string{"a", "b"}, MFA: true,
		ClientIP: "203.0.113.7", UserAgent: "test", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), RefreshToken: []byte{1, 2, 3}, AuthTime: t0}
	if err := s.CreateSession(ctx(t), x); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx(t), &store.Session{IDHash: "h1", UserID: u.ID, ExpiresAt: t0}); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("duplicate id hash: err = %v", err)
	}
	got, err := s.GetSession(ctx(t), "h1")
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != u.ID || got.Provider != "google" || !slices.Equal(got.Groups, []string{"a", "b"}) || !got.MFA ||
		got.ClientIP != "203.0.113.7" || string(got.RefreshToken) != "\x01\x02\x03" || !got.AuthTime.Equal(t0) ||
		!got.LastSeen.Equal(t0) || !got.ExpiresAt.Equal(t0.Add(time.Hour)) || !got.RevokedAt.IsZero() {
		t.Errorf("got %+v", got)
	}
	if err := s.TouchSession(ctx(t), "h1", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSession(ctx(t), "h1", t0.Add(time.Second)); err != nil { // older: ignored
		t.Fatal(err)
	}
	got, _ = s.GetSession(ctx(t), "h1")
	if !got.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Errorf("last seen = %v, want the latest touch", got.LastSeen)
	}
	got.MFA, got.ExpiresAt, got.RefreshToken = false, t0.Add(2*time.Hour), nil
	if err := s.UpdateSession(ctx(t), got); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetSession(ctx(t), "h1")
	if got.MFA || !got.ExpiresAt.Equal(t0.Add(2*time.Hour)) || got.RefreshToken != nil {
		t.Errorf("after update: %+v", got)
	}
	stale := *got
	stale.RevokedAt = t0.Add(time.Minute) // a caller's revocation is ignored...
	if err := s.UpdateSession(ctx(t), &stale); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.GetSession(ctx(t), "h1"); !got.RevokedAt.IsZero() {
		t.Errorf("UpdateSession revoked the session: %+v", got)
	}
	if list, _ := s.ListSessions(ctx(t), u.ID); len(list) != 1 {
		t.Errorf("ListSessions = %d, want 1", len(list))
	}
	if err := s.RevokeSession(ctx(t), "h1", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeSession(ctx(t), "h1", t0.Add(time.Hour)); err != nil { // again: keeps the first time
		t.Fatal(err)
	}
	got, _ = s.GetSession(ctx(t), "h1")
	if !got.RevokedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("revoked at = %v", got.RevokedAt)
	}
	// ...and a stale copy written back cannot undo a revocation.
	got.RevokedAt = time.Time{}
	if err := s.UpdateSession(ctx(t), got); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSession of a revoked session: %v, want ErrNotFound", err)
	}
	if got, _ = s.GetSession(ctx(t), "h1"); got.RevokedAt.IsZero() {
		t.Errorf("a stale UpdateSession undid the revocation")
	}
	if list, _ := s.ListSessions(ctx(t), u.ID); len(list) != 0 {
		t.Errorf("a revoked session is listed as live")
	}
}

func testRevokeUserSessions(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	other := mustUser(t, s, "bob@example.com")
	exp := time.Now().Add(time.Hour)
	for _, x := range []*store.Session{{IDHash: "a1", UserID: u.ID}, {IDHash: "a2", UserID: u.ID}, {IDHash: "b1", UserID: other.ID}} {
		x.ExpiresAt = exp
		if err := s.CreateSession(ctx(t), x); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.RevokeSession(ctx(t), "a1", t0.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	hashes, err := s.RevokeUserSessions(ctx(t), u.ID, t0)
	if err != nil || !slices.Equal(hashes, []string{"a2"}) {
		t.Fatalf("RevokeUserSessions = %v, %v: want only the still-live a2", hashes, err)
	}
	since, err := s.RevokedSince(ctx(t), t0.Add(-time.Second))
	if err != nil || !slices.Equal(since, []string{"a2"}) {
		t.Errorf("RevokedSince(t0-1s) = %v, %v", since, err)
	}
	since, _ = s.RevokedSince(ctx(t), t0.Add(-time.Hour))
	if !slices.Equal(sorted(since), []string{"a1", "a2"}) {
		t.Errorf("RevokedSince(t0-1h) = %v", since)
	}
	if since, _ = s.RevokedSince(ctx(t), t0); len(since) != 0 {
		t.Errorf("RevokedSince(t0) = %v, want none (strictly after)", since)
	}
	if b, _ := s.GetSession(ctx(t), "b1"); !b.RevokedAt.IsZero() {
		t.Error("another user's session was revoked")
	}
}

func testDeleteExpiredSessions(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	t0 := time.Now()
	for _, x := range []*store.Session{
		{IDHash: "expired", ExpiresAt: t0.Add(-time.Minute)},
		{IDHash: "live", ExpiresAt: t0.Add(time.Hour)},
		{IDHash: "revoked-now", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0.Add(-time.Minute)},
		{IDHash: "revoked-long-ago", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0.Add(-store.RevokedRetention - time.Minute)},
	} {
		x.UserID = u.ID
		if err := s.CreateSession(ctx(t), x); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteExpiredSessions(ctx(t), t0)
	if err != nil || n != 2 {
		t.Fatalf("deleted %d, %v; want 2", n, err)
	}
	for _, h := range []string{"live", "revoked-now"} {
		if _, err := s.GetSession(ctx(t), h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
}

func testTOTPStep(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	if _, err := s.AdvanceTOTPStep(ctx(t), u.ID, 5); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("no totp: err = %v", err)
	}
	if err := s.PutTOTP(ctx(t), &store.TOTP{UserID: u.ID, Secret: []byte("sealed"), LastStep: 10}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		step int64
		want bool
	}{{9, false}, {10, false}, {11, true}, {11, false}, {13, true}, {12, false}} {
		ok, err := s.AdvanceTOTPStep(ctx(t), u.ID, tc.step)
		if err != nil || ok != tc.want {
			t.Errorf("step %d: ok = %v, %v; want %v", tc.step, ok, err, tc.want)
		}
	}
	got, _ := s.GetTOTP(ctx(t), u.ID)
	if got.LastStep != 13 || string(got.Secret) != "sealed" || got.Confirmed {
		t.Errorf("got %+v", got)
	}
	got.Confirmed = true
	if err := s.PutTOTP(ctx(t), got); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.GetTOTP(ctx(t), u.ID); !got.Confirmed {
		t.Error("PutTOTP did not replace")
	}
	if err := s.DeleteTOTP(ctx(t), u.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTOTP(ctx(t), u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func testTOTPConcurrent(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	if err := s.PutTOTP(ctx(t), &store.TOTP{UserID: u.ID, Secret: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 8 {
		wg.Go(func() {
			ok, err := s.AdvanceTOTPStep(context.Background(), u.ID, 42)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Errorf("%d of 8 concurrent uses accepted, want exactly 1", accepted)
	}
}

func testRecoveryCode(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	if err := s.PutTOTP(ctx(t), &store.TOTP{UserID: u.ID, Secret: []byte("x"), RecoveryCodes: []string{"h1", "h2", "h3"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code string
		want bool
	}{{"h2", true}, {"h2", false}, {"nope", false}, {"h1", true}} {
		ok, err := s.UseRecoveryCode(ctx(t), u.ID, tc.code)
		if err != nil || ok != tc.want {
			t.Errorf("%s: ok = %v, %v; want %v", tc.code, ok, err, tc.want)
		}
	}
	got, _ := s.GetTOTP(ctx(t), u.ID)
	if !slices.Equal(got.RecoveryCodes, []string{"h3"}) {
		t.Errorf("codes left = %q", got.RecoveryCodes)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for range 8 {
		wg.Go(func() {
			if ok, _ := s.UseRecoveryCode(context.Background(), u.ID, "h3"); ok {
				mu.Lock()
				n++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n != 1 {
		t.Errorf("a code raced 8 ways was accepted %d times", n)
	}
}

func testTokens(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	exp := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Microsecond)
	tok := &store.Token{Hash: "hash1", UserID: u.ID, Name: "ci", ExpiresAt: exp}
	if err := s.CreateToken(ctx(t), tok); err != nil {
		t.Fatal(err)
	}
	if tok.ID == "" || tok.CreatedAt.IsZero() {
		t.Errorf("id/created not set: %+v", tok)
	}
	if err := s.CreateToken(ctx(t), &store.Token{Hash: "hash1", UserID: u.ID}); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("duplicate hash: %v", err)
	}
	got, err := s.GetTokenByHash(ctx(t), "hash1")
	if err != nil || got.ID != tok.ID || got.Name != "ci" || !got.ExpiresAt.Equal(exp) || !got.LastUsed.IsZero() {
		t.Fatalf("got %+v, %v", got, err)
	}
	used := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.TouchToken(ctx(t), tok.ID, used); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx(t), tok.ID, used); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListTokens(ctx(t), u.ID)
	if err != nil || len(list) != 1 || !list[0].LastUsed.Equal(used) || !list[0].RevokedAt.Equal(used) {
		t.Fatalf("list = %+v, %v", list, err)
	}
}

func testSigningKeys(t *testing.T, s store.Store) {
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	k1 := &store.SigningKey{ID: "k1", Algorithm: "ES256", PublicKey: []byte("pub1"), PrivateKey: []byte("sealed1"), CreatedAt: t0.Add(-time.Hour)}
	k2 := &store.SigningKey{Algorithm: "ES256", PublicKey: []byte("pub2"), PrivateKey: []byte("sealed2"), CreatedAt: t0}
	for _, k := range []*store.SigningKey{k1, k2} {
		if err := s.AddSigningKey(ctx(t), k); err != nil {
			t.Fatal(err)
		}
	}
	if k2.ID == "" {
		t.Error("no id set")
	}
	if err := s.AddSigningKey(ctx(t), &store.SigningKey{ID: "k1", Algorithm: "ES256"}); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("duplicate kid: %v", err)
	}
	if err := s.RetireSigningKey(ctx(t), "k1", t0); err != nil {
		t.Fatal(err)
	}
	keys, err := s.ListSigningKeys(ctx(t))
	if err != nil || len(keys) != 2 || keys[0].ID != "k1" || !keys[0].RetireAt.Equal(t0) || !keys[1].RetireAt.IsZero() ||
		string(keys[1].PrivateKey) != "sealed2" || string(keys[0].PublicKey) != "pub1" {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	if err := s.DeleteSigningKey(ctx(t), "k1"); err != nil {
		t.Fatal(err)
	}
	if keys, _ = s.ListSigningKeys(ctx(t)); len(keys) != 1 {
		t.Errorf("after delete: %d keys", len(keys))
	}
}

func testAudit(t *testing.T, s store.Store) {
	t0 := time.Now().UTC().Truncate(time.Second)
	for i := range 10 {
		action := "login.success"
		if i%3 == 0 {
			action = "login.failure"
		}
		e := &store.AuditEvent{Time: t0.Add(time.Duration(i) * time.Minute), Actor: "system", Action: action,
			Subject: fmt.Sprintf("u%d@example.com", i%2), ClientIP: "192.0.2.1", Detail: fmt.Sprint(i)}
		if err := s.Audit(ctx(t), e); err != nil {
			t.Fatal(err)
		}
		if e.ID == 0 {
			t.Fatal("no id set")
		}
	}
	if err := s.Audit(ctx(t), &store.AuditEvent{Actor: "cli"}); err == nil {
		t.Error("an event without action was accepted")
	}
	details := func(es []*store.AuditEvent) string {
		var out []string
		for _, e := range es {
			out = append(out, e.Detail)
		}
		return fmt.Sprint(out)
	}
	for _, tc := range []struct {
		name string
		f    store.AuditFilter
		want string
	}{
		{"all, newest first", store.AuditFilter{}, "[9 8 7 6 5 4 3 2 1 0]"},
		{"by action", store.AuditFilter{Action: "login.failure"}, "[9 6 3 0]"},
		{"by subject", store.AuditFilter{Subject: "u1@example.com"}, "[9 7 5 3 1]"},
		{"since is inclusive, until exclusive", store.AuditFilter{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute)}, "[4 3 2]"},
		{"page 2 of 3", store.AuditFilter{Limit: 3, Offset: 3}, "[6 5 4]"},
		{"combined", store.AuditFilter{Action: "login.success", Subject: "u0@example.com", Limit: 2}, "[8 4]"},
		{"by actor", store.AuditFilter{Actor: "cli"}, "[]"},
	} {
		got, err := s.ListAudit(ctx(t), tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if details(got) != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, details(got), tc.want)
		}
	}
	got, _ := s.ListAudit(ctx(t), store.AuditFilter{Limit: 1})
	if e := got[0]; e.Actor != "system" || e.ClientIP != "192.0.2.1" || !e.Time.Equal(t0.Add(9*time.Minute)) {
		t.Errorf("event = %+v", e)
	}
}

func testConcurrentWriters(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Go(func() {
			c := context.Background()
			for i := range each {
				h := fmt.Sprintf("w%d-%d", w, i)
				if err := s.CreateSession(c, &store.Session{IDHash: h, UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
					errs <- err
				}
				if err := s.Audit(c, &store.AuditEvent{Actor: "test", Action: "write", Detail: h}); err != nil {
					errs <- err
				}
				if err := s.TouchSession(c, h, time.Now()); err != nil {
					errs <- err
				}
				if _, err := s.GetUser(c, u.ID); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if list, _ := s.ListSessions(ctx(t), u.ID); len(list) != workers*each {
		t.Errorf("%d sessions, want %d", len(list), workers*each)
	}
	if ev, _ := s.ListAudit(ctx(t), store.AuditFilter{Action: "write"}); len(ev) != workers*each {
		t.Errorf("%d audit events, want %d", len(ev), workers*each)
	}
}

func testUpdateConflict(t *testing.T, s store.Store) {
	mustUser(t, s, "alice@example.com")
	// A sign-in reads the user, then an admin disables it.
	login, _ := s.GetUserByEmail(ctx(t), "alice@example.com")
	admin, _ := s.GetUserByEmail(ctx(t), "alice@example.com")
	admin.Disabled = true
	if err := s.UpdateUser(ctx(t), admin); err != nil {
		t.Fatal(err)
	}
	if !admin.UpdatedAt.After(login.UpdatedAt) {
		t.Errorf("UpdatedAt did not move forward: %v then %v", login.UpdatedAt, admin.UpdatedAt)
	}
	login.LastLoginAt = time.Now()
	if err := s.UpdateUser(ctx(t), login); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: err = %v, want ErrConflict", err)
	}
	got, _ := s.GetUserByEmail(ctx(t), "alice@example.com")
	if !got.Disabled {
		t.Fatal("a stale update undid the disable")
	}
	// Two updates in a row from fresh reads both succeed.
	for range 2 {
		u, _ := s.GetUser(ctx(t), got.ID)
		u.Name += "x"
		if err := s.UpdateUser(ctx(t), u); err != nil {
			t.Fatal(err)
		}
	}
	// A blind write (no UpdatedAt) is not checked.
	blind := &store.User{ID: got.ID, Email: got.Email, Name: "blind", Disabled: true}
	if err := s.UpdateUser(ctx(t), blind); err != nil {
		t.Fatal(err)
	}
	// Racing updates from one read: exactly one wins.
	base, _ := s.GetUser(ctx(t), got.ID)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 6 {
		wg.Go(func() {
			u := *base
			u.Name = fmt.Sprint("racer", i)
			err := s.UpdateUser(context.Background(), &u)
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, store.ErrConflict) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d of 6 racing updates won, want 1", wins)
	}
}

func testRecordLoginAndSetPassword(t *testing.T, s store.Store) {
	u := mustUser(t, s, "alice@example.com")
	at := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.RecordLogin(ctx(t), u.ID, at); err != nil {
		t.Fatal(err)
	}
	// An admin's read from before the login still updates fine, and does
	// not move the last login back.
	u.Name = "Alice"
	if err := s.UpdateUser(ctx(t), u); err != nil {
		t.Fatalf("RecordLogin made an admin's update conflict: %v", err)
	}
	got, _ := s.GetUser(ctx(t), u.ID)
	if !got.LastLoginAt.Equal(at) || got.Name != "Alice" {
		t.Errorf("got %+v", got)
	}
	ok, err := s.SetPasswordHash(ctx(t), u.ID, got.PasswordHash, "$argon2id$rehashed", false)
	if err != nil || !ok {
		t.Fatalf("rehash: %v %v", ok, err)
	}
	ok, err = s.SetPasswordHash(ctx(t), u.ID, got.PasswordHash, "$argon2id$late", true)
	if err != nil || ok {
		t.Errorf("a swap from a stale hash: ok = %v, %v; want false", ok, err)
	}
	got, _ = s.GetUser(ctx(t), u.ID)
	if got.PasswordHash != "$argon2id$rehashed" || got.MustChangePassword {
		t.Errorf("got %+v", got)
	}
	if _, err := s.SetPasswordHash(ctx(t), "nope", "a", "b", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	if err := s.RecordLogin(ctx(t), "nope", at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
}
