package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/store"
)

// firebaseFlags are the hash parameters of github.com/firebase/scrypt's
// README sample project, whose account user1@test.com has the password
// "user1password" (testdata/firebase-users.json holds that account).
var firebaseFlags = []string{"--format", "firebase",
	"--hash-key", "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==",
	"--salt-separator", "Bw==", "--rounds", "8", "--mem-cost", "14"}

func TestUsersImportFirebaseKeepsPasswordsAndDisabledState(t *testing.T) {
	e := newCLIEnv(t)
	args := append([]string{"users", "import", "testdata/firebase-users.json", "--group", "customer-a"}, firebaseFlags...)
	out := e.mustMoat(t, "", args...)
	for _, want := range []string{
		"skipped users[2] dev@example.com gOoGlE000000000000000000000003: no password (signs in with google.com; give the route an SSO login instead)\n",
		"skipped users[3] pHoNe0000000000000000000000004: no email address\n",
		"skipped users[4] short@test.com sHoRt0000000000000000000000005: the hash is 32 bytes but the hash key 64; is the hash key the project's?\n",
		"imported 2 user(s); 0 already existed; 3 skipped\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	st := e.store(t)
	u, err := st.GetUserByEmail(t.Context(), "user1@test.com")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "Test User 1" || u.Disabled || u.MustChangePassword || strings.Join(u.Groups, ",") != "customer-a" {
		t.Errorf("user1 = %+v", u)
	}
	if ok, rehash, err := password.Verify("user1password", u.PasswordHash); !ok || !rehash || err != nil {
		t.Errorf("the imported hash: Verify(original password) = %v, %v, %v", ok, rehash, err)
	}
	former, err := st.GetUserByEmail(t.Context(), "former.customer@test.com")
	if err != nil {
		t.Fatal(err)
	}
	if !former.Disabled {
		t.Error("a disabled Firebase account was imported enabled")
	}
	events, err := st.ListAudit(t.Context(), store.AuditFilter{Action: "user.import"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Errorf("audit has %d user.import events, want 2: %+v", len(events), events)
	}

	// Importing again leaves the users alone.
	again := e.mustMoat(t, "", args...)
	if !strings.Contains(again, "skipped user1@test.com: already a user (left as it is)") || !strings.Contains(again, "imported 0 user(s); 2 already existed; 3 skipped") {
		t.Errorf("second import:\n%s", again)
	}
}

func TestUsersImportErrorsAreClear(t *testing.T) {
	e := newCLIEnv(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(firebaseFlags[3]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withKeyFile := []string{"--format", "firebase", "--hash-key-file", keyFile, "--salt-separator", "Bw==", "--rounds", "8", "--mem-cost", "14"}
	for _, tc := range []struct {
		name string
		file string
		args []string
		want string
	}{
		{"another format", "", []string{"--format", "csv", "--hash-key", "AA==", "--salt-separator", "Bw==", "--rounds", "8", "--mem-cost", "14"}, `--format "csv": the one format moat imports is firebase`},
		{"no hash key", "", []string{"--format", "firebase", "--salt-separator", "Bw==", "--rounds", "8", "--mem-cost", "14"}, "--hash-key (or --hash-key-file) is required"},
		{"a hash key that is not base64", "", []string{"--format", "firebase", "--hash-key", "%%%", "--salt-separator", "Bw==", "--rounds", "8", "--mem-cost", "14"}, "--hash-key is not base64"},
		{"rounds out of range", "", []string{"--format", "firebase", "--hash-key", "AA==", "--salt-separator", "Bw==", "--rounds", "80", "--mem-cost", "14"}, "hash parameters: rounds must be between 1 and 8, not 80 (copy them from the Firebase console)"},
		{"a missing flag", "", []string{"--format", "firebase", "--hash-key", "AA==", "--rounds", "8", "--mem-cost", "14"}, `required flag(s) "salt-separator" not set`},
		{"not an export", "testdata/check/empty.txt", withKeyFile, "testdata/check/empty.txt: not a firebase auth:export JSON file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file
			if file == "" {
				file = "testdata/firebase-users.json"
			}
			out, err := e.moat(t, "", append([]string{"users", "import", file}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q\n%s", err, tc.want, out)
			}
		})
	}
}
