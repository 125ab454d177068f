package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
)

// cliEnv is a config file whose store is SQLite in a temp data_dir.
type cliEnv struct {
	cfg, dataDir, dsn string
}

func newCLIEnv(t *testing.T) *cliEnv { return newCLIEnvWithStore(t, "") }

// newCLIEnvWithStore writes a config whose store: is dsn ("" for the
// SQLite default in data_dir).
func newCLIEnvWithStore(t *testing.T, dsn string) *cliEnv {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "moat.yaml")
	storeLine := ""
	if dsn != "" {
		storeLine = fmt.Sprintf("store: %q\n", dsn)
	}
	yaml := fmt.Sprintf(`data_dir: %s
%sidentity:
  passwords: {min_length: 12}
backends:
  app: {url: "http://127.0.0.1:8501"}
routes:
  - {host: app.example.com, backend: app, public: true}
`, data, storeLine)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return &cliEnv{cfg: cfg, dataDir: data, dsn: dsn}
}

// moat runs the CLI in-process and returns its output and error.
func (e *cliEnv) moat(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append(args, "-c", e.cfg))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func (e *cliEnv) mustMoat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := e.moat(t, stdin, args...)
	if err != nil {
		t.Fatalf("moat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *cliEnv) store(t *testing.T) store.Store {
	t.Helper()
	dsn := e.dsn
	if dsn == "" {
		dsn = filepath.Join(e.dataDir, "moat.db")
	}
	st, err := store.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var oneTimeRE = regexp.MustCompile(`(?m)^([a-z2-9]{5}(-[a-z2-9]{5}){3,})$`)

func TestUsersAddWithoutPasswordPrintsAOneTimePassword(t *testing.T) {
	e := newCLIEnv(t)
	out := e.mustMoat(t, "", "users", "add", "Alice@Example.com", "--name", "Alice", "--group", "staff", "--group", "ops")
	m := oneTimeRE.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "created user alice@example.com") {
		t.Fatalf("output has no one-time password:\n%s", out)
	}
	u, err := e.store(t).GetUserByEmail(t.Context(), "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !u.MustChangePassword || u.Name != "Alice" || strings.Join(u.Groups, ",") != "ops,staff" {
		t.Errorf("user = %+v", u)
	}
	if ok, _, err := password.Verify(m[1], u.PasswordHash); !ok || err != nil {
		t.Errorf("the printed password does not verify: %v %v", ok, err)
	}
	if strings.Contains(u.PasswordHash, m[1]) {
		t.Error("the password is stored in clear")
	}
}

func TestUsersAddWithPasswordFromStdin(t *testing.T) {
	e := newCLIEnv(t)
	out := e.mustMoat(t, "tangerine-voltage-harbor\n", "users", "add", "bob@example.com", "--password-stdin")
	if oneTimeRE.MatchString(out) {
		t.Errorf("a one-time password was printed although one was given:\n%s", out)
	}
	u, _ := e.store(t).GetUserByEmail(t.Context(), "bob@example.com")
	if ok, _, _ := password.Verify("tangerine-voltage-harbor", u.PasswordHash); !ok || u.MustChangePassword {
		t.Errorf("ok = %v, must change = %v", ok, u.MustChangePassword)
	}
}

func TestUsersErrorsAreClear(t *testing.T) {
	e := newCLIEnv(t)
	e.mustMoat(t, "", "users", "add", "alice@example.com")
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"a duplicate email, whatever its case", "", []string{"users", "add", "ALICE@example.com"}, "user alice@example.com already exists"},
		{"an unknown user", "", []string{"users", "show", "nobody@example.com"}, "no user nobody@example.com"},
		{"an unknown user to disable", "", []string{"users", "disable", "nobody@example.com"}, "no user nobody@example.com"},
		{"a short password", "short\n", []string{"users", "add", "c@example.com", "--password-stdin"}, "weak password: the password is too short: use at least 12 characters"},
		{"a common password", "password1234\n", []string{"users", "add", "c@example.com", "--password-stdin"}, "weak password: the password is on the list of commonly used passwords"},
		{"the email as password", "carol.longname@example.com\n", []string{"users", "add", "carol.longname@example.com", "--password-stdin"}, "must not be your email address"},
		{"an overlong password", strings.Repeat("x", 300) + "\n", []string{"users", "add", "c@example.com", "--password-stdin"}, "too long"},
		{"an empty stdin", "", []string{"users", "add", "c@example.com", "--password-stdin"}, "no password on stdin"},
		{"an invalid email", "", []string{"users", "add", "Alice <a@example.com>"}, "invalid email"},
		{"delete without --yes", "", []string{"users", "delete", "alice@example.com"}, "cannot be undone: add --yes"},
		{"a weak reset", "short\n", []string{"users", "reset-password", "alice@example.com", "--password-stdin"}, "weak password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.moat(t, tc.stdin, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q\n%s", err, tc.want, out)
			}
		})
	}
	if _, err := e.store(t).GetUserByEmail(t.Context(), "c@example.com"); err == nil {
		t.Error("a refused add created the user")
	}
}

func TestUsersListAndShow(t *testing.T) {
	e := newCLIEnv(t)
	e.mustMoat(t, "", "users", "add", "bob@example.com", "--group", "staff")
	e.mustMoat(t, "", "users", "add", "alice@example.com", "--name", "Alice")
	out := e.mustMoat(t, "", "users", "list")
	if !regexp.MustCompile(`(?s)EMAIL.*alice@example.com\s+Alice\s+-\s+must-change-password.*bob@example.com\s+-\s+staff`).MatchString(out) {
		t.Errorf("list:\n%s", out)
	}
	var list []userJSON
	if err := json.Unmarshal([]byte(e.mustMoat(t, "", "users", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Email != "alice@example.com" || !list[0].HasPassword || list[1].Groups[0] != "staff" {
		t.Errorf("list --json = %+v", list)
	}
	raw := e.mustMoat(t, "", "users", "show", "Bob@Example.com", "--json")
	if strings.Contains(raw, "argon2") {
		t.Errorf("show prints the hash:\n%s", raw)
	}
	var one userJSON
	if err := json.Unmarshal([]byte(raw), &one); err != nil {
		t.Fatal(err)
	}
	if one.Email != "bob@example.com" || one.Sessions == nil || *one.Sessions != 0 || one.MFA == nil || *one.MFA {
		t.Errorf("show --json = %s", raw)
	}
	out = e.mustMoat(t, "", "users", "show", "bob@example.com")
	if !strings.Contains(out, "groups:") || !strings.Contains(out, "staff") || !strings.Contains(out, "live sessions:") {
		t.Errorf("show:\n%s", out)
	}
}

// addSession gives the user a live session, as a sign-in would.
func addSession(t *testing.T, st store.Store, email, hash string) {
	t.Helper()
	u, err := st.GetUserByEmail(t.Context(), email)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateSession(t.Context(), &store.Session{IDHash: hash, UserID: u.ID, Email: u.Email, Provider: "password", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

func TestUsersChangesEndSessionsAndAreAudited(t *testing.T) {
	e := newCLIEnv(t)
	e.mustMoat(t, "", "users", "add", "alice@example.com")
	st := e.store(t)
	start := time.Now().Add(-time.Second)
	for _, tc := range []struct {
		name     string
		stdin    string
		args     []string
		sessions bool // whether the change must end live sessions
		action   string
		check    func(u *store.User) bool
	}{
		{"disable ends sessions", "", []string{"users", "disable", "alice@example.com"}, true, "user.disable", func(u *store.User) bool { return u.Disabled }},
		{"enable lets the user back", "", []string{"users", "enable", "alice@example.com"}, false, "user.enable", func(u *store.User) bool { return !u.Disabled }},
		{"set-groups replaces groups", "", []string{"users", "set-groups", "alice@example.com", "a", "b"}, false, "user.groups", func(u *store.User) bool { return strings.Join(u.Groups, ",") == "a,b" }},
		{"set-groups with none clears them", "", []string{"users", "set-groups", "alice@example.com"}, false, "user.groups", func(u *store.User) bool { return len(u.Groups) == 0 }},
		{"reset-password ends sessions", "", []string{"users", "reset-password", "alice@example.com"}, true, "user.reset_password", func(u *store.User) bool { return u.MustChangePassword }},
		{"reset-password from stdin", "tangerine-voltage-harbor\n", []string{"users", "reset-password", "alice@example.com", "--password-stdin"}, true, "user.reset_password", func(u *store.User) bool {
			ok, _, _ := password.Verify("tangerine-voltage-harbor", u.PasswordHash)
			return ok && !u.MustChangePassword
		}},
		{"revoke-sessions ends sessions", "", []string{"users", "revoke-sessions", "alice@example.com"}, true, "session.revoke_all", func(*store.User) bool { return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hash := "h-" + tc.name
			addSession(t, st, "alice@example.com", hash)
			out := e.mustMoat(t, tc.stdin, tc.args...)
			u, err := st.GetUserByEmail(t.Context(), "alice@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(u) {
				t.Errorf("user after change: %+v\n%s", u, out)
			}
			x, _ := st.GetSession(t.Context(), hash)
			if ended := !x.RevokedAt.IsZero(); ended != tc.sessions {
				t.Errorf("session ended = %v, want %v", ended, tc.sessions)
			}
			ev, _ := st.ListAudit(t.Context(), store.AuditFilter{Action: tc.action, Since: start})
			if len(ev) == 0 || ev[0].Actor != "cli" || ev[0].Subject != "alice@example.com" {
				t.Errorf("no %s audit event by cli: %+v", tc.action, ev)
			}
		})
	}
	_ = st.RevokeSession(t.Context(), "none", time.Now())
	addSession(t, st, "alice@example.com", "last")
	e.mustMoat(t, "", "users", "delete", "alice@example.com", "--yes")
	if _, err := st.GetUserByEmail(t.Context(), "alice@example.com"); err == nil {
		t.Error("user still there after delete")
	}
	if x, _ := st.GetSession(t.Context(), "last"); x.RevokedAt.IsZero() {
		t.Error("delete left a live session")
	}
	if revoked, _ := st.RevokedSince(t.Context(), start); len(revoked) < 5 {
		t.Errorf("RevokedSince reports %d sessions, want every ended one", len(revoked))
	}
}

func TestAuditListsAndFilters(t *testing.T) {
	e := newCLIEnv(t)
	e.mustMoat(t, "", "users", "add", "alice@example.com")
	e.mustMoat(t, "", "users", "add", "bob@example.com")
	e.mustMoat(t, "", "users", "disable", "bob@example.com")
	st := e.store(t)
	old := &store.AuditEvent{Time: time.Now().Add(-48 * time.Hour), Actor: "system", Action: "login.failure", Subject: "bob@example.com", ClientIP: "192.0.2.9"}
	if err := st.Audit(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	out := e.mustMoat(t, "", "audit")
	// The CLI audits as the console does (one directory): disabling is one
	// user.disable event that counts the sessions it ended.
	for _, want := range []string{"TIME", "user.create", "user.disable", "session(s) ended", "login.failure", "192.0.2.9"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit output lacks %q:\n%s", want, out)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string // actions, newest first
	}{
		{"since a duration", []string{"--since", "24h", "--user", "bob@example.com"}, []string{"user.disable", "user.create"}},
		{"since days", []string{"--since", "3d", "--user", "BOB@example.com", "--action", "login.failure"}, []string{"login.failure"}},
		{"since a time", []string{"--since", time.Now().Add(-72 * time.Hour).UTC().Format(time.RFC3339), "--action", "user.create"}, []string{"user.create", "user.create"}},
		{"limit", []string{"--limit", "1"}, []string{"user.disable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []auditJSON
			if err := json.Unmarshal([]byte(e.mustMoat(t, "", append([]string{"audit", "--json"}, tc.args...)...)), &got); err != nil {
				t.Fatal(err)
			}
			var actions []string
			for _, ev := range got {
				actions = append(actions, ev.Action)
			}
			if strings.Join(actions, " ") != strings.Join(tc.want, " ") {
				t.Errorf("actions = %v, want %v", actions, tc.want)
			}
		})
	}
	if _, err := e.moat(t, "", "audit", "--since", "yesterday"); err == nil || !strings.Contains(err.Error(), "invalid --since") {
		t.Errorf("bad --since: %v", err)
	}
}

func TestGeneratedPasswordsPassThePolicy(t *testing.T) {
	for _, n := range []int{8, 12, 40, 128} {
		pw := directory.GeneratePassword(n)
		if err := (password.Policy{MinLength: n}).Check(pw, "a@example.com"); err != nil {
			t.Errorf("min %d: %q refused: %v", n, pw, err)
		}
	}
}

func TestUsersWorkAgainstPostgres(t *testing.T) {
	e := newCLIEnvWithStore(t, storetest.Postgres(t))
	e.mustMoat(t, "", "users", "add", "alice@example.com", "--group", "staff")
	if _, err := e.moat(t, "", "users", "add", "Alice@example.com"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate: %v", err)
	}
	e.mustMoat(t, "", "users", "disable", "alice@example.com")
	out := e.mustMoat(t, "", "users", "list")
	if !regexp.MustCompile(`alice@example.com\s+-\s+staff\s+disabled`).MatchString(out) {
		t.Errorf("list:\n%s", out)
	}
	if out := e.mustMoat(t, "", "audit", "--user", "alice@example.com"); !strings.Contains(out, "user.disable") {
		t.Errorf("audit:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "moat.db")); err == nil {
		t.Error("a SQLite file was created although store: names PostgreSQL")
	}
}

// Issue 11 / issue 12 #5: users add and set-groups wrote any group name to
// the store, past the console's rule: a comma made X-Moat-User-Groups
// ambiguous and markup was accepted. The CLI follows directory's one rule.
func TestCLIUsersAddAndSetGroupsFollowTheConsolesGroupNameRule(t *testing.T) {
	e := newCLIEnv(t)
	for _, args := range [][]string{
		{"users", "add", "mallory@example.com", "--group", "<b>x</b>"},
		{"users", "add", "mallory@example.com", "--group", "a b!"},
	} {
		if _, err := e.moat(t, "", args...); err == nil || !strings.Contains(err.Error(), "group name") {
			t.Errorf("%v: err = %v, want the group-name rule", args, err)
		}
	}
	e.mustMoat(t, "", "users", "add", "alice@example.com", "--group", "staff,analysts")
	if out := e.mustMoat(t, "", "users", "show", "alice@example.com", "--json"); !strings.Contains(out, `"analysts",`) || strings.Contains(out, "staff,analysts") {
		t.Errorf("a comma-separated --group is not two groups:\n%s", out)
	}
	if _, err := e.moat(t, "", "users", "set-groups", "alice@example.com", "<b>x</b>"); err == nil || !strings.Contains(err.Error(), "group name") {
		t.Errorf("set-groups with markup: err = %v", err)
	}
	e.mustMoat(t, "", "users", "set-groups", "alice@example.com", "a,b", "c")
	if out := e.mustMoat(t, "", "users", "show", "alice@example.com"); !strings.Contains(out, "a,b,c") {
		t.Errorf("set-groups a,b c:\n%s", out)
	}
}

// lockSignIn locks email's sign-in from unknown devices in st as a
// distributed attack would: failures from four clients past a small lock
// threshold, counted where the running instances count (the store).
func lockSignIn(t *testing.T, st store.Store, email string) {
	t.Helper()
	th := throttle.New(attempts.NewStore(st), nil)
	l := th.Limits[throttle.Password]
	l.Lock = throttle.Lock{Failures: 4, Clients: 4, For: time.Hour}
	th.Limits[throttle.Password] = l
	ctx := context.Background()
	for i := range 4 {
		at := throttle.Attempt{Factor: throttle.Password, Account: email, Source: throttle.Source{Client: netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})}}
		if _, err := th.Begin(ctx, at); err != nil {
			t.Fatal(err)
		}
		if _, err := th.Failed(ctx, at); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 12 #2: moat users show says when a distributed attack locked a
// user's sign-in from new devices, and moat users unlock lifts it, with an
// audit event; with counters: on a Redis that does not answer, the unlock
// fails and says so rather than report a success no instance sees.
func TestUsersUnlockLiftsASignInLock(t *testing.T) {
	e := newCLIEnv(t)
	e.mustMoat(t, "a long enough passphrase\n", "users", "add", "alice@example.com", "--password-stdin")
	st := e.store(t)
	if out := e.mustMoat(t, "", "users", "show", "alice@example.com"); !regexp.MustCompile(`sign-in lock:\s+none`).MatchString(out) {
		t.Fatalf("show before any attack:\n%s", out)
	}
	lockSignIn(t, st, "alice@example.com")
	if out := e.mustMoat(t, "", "users", "show", "alice@example.com"); !regexp.MustCompile(`new devices locked for (1h0m0s|59m[0-9]+s) more \(moat users unlock\)`).MatchString(out) {
		t.Fatalf("show during the lock:\n%s", out)
	}
	out := e.mustMoat(t, "", "users", "unlock", "ALICE@example.com")
	if !strings.Contains(out, "unlocked sign-in of alice@example.com") {
		t.Fatalf("unlock said:\n%s", out)
	}
	if left, err := throttle.New(attempts.NewStore(st), nil).Locked(context.Background(), "alice@example.com"); err != nil || left != 0 {
		t.Fatalf("after the unlock: locked %v, %v", left, err)
	}
	evs, err := st.ListAudit(context.Background(), store.AuditFilter{Action: "login.unlock", Subject: "alice@example.com"})
	if err != nil || len(evs) != 1 || evs[0].Actor != "cli" {
		t.Fatalf("login.unlock events %+v, %v", evs, err)
	}
	if out := e.mustMoat(t, "", "users", "unlock", "alice@example.com"); !strings.Contains(out, "was not locked") {
		t.Errorf("a second unlock said:\n%s", out)
	}

	f, err := os.OpenFile(e.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, `counters: "redis://127.0.0.1:1/0"`) // nothing listens on port 1
	f.Close()
	out, err = e.moat(t, "", "users", "unlock", "alice@example.com")
	if err == nil || !strings.Contains(err.Error(), "failure counters unavailable") || !strings.Contains(err.Error(), "counters:") {
		t.Fatalf("unlock with Redis down: %v\n%s", err, out)
	}
}
