package firebaseexport

import (
	"os"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/auth/password"
)

// The sample project of github.com/firebase/scrypt's README; its exported
// account user1@test.com has the password "user1password".
func readmeParams(t testing.TB) password.FirebaseParams {
	t.Helper()
	key, err := DecodeKey("--hash-key", "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==")
	if err != nil {
		t.Fatal(err)
	}
	sep, err := DecodeKey("--salt-separator", "Bw==")
	if err != nil {
		t.Fatal(err)
	}
	return password.FirebaseParams{SignerKey: key, SaltSeparator: sep, Rounds: 8, MemCost: 14}
}

func TestReadKeepsPasswordUsersAndSaysWhyOthersAreSkipped(t *testing.T) {
	f, err := os.Open("testdata/users.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	accounts, skipped, err := Read(f, readmeParams(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(accounts) != 2 {
		t.Fatalf("accounts = %+v, want user1 and the disabled customer", accounts)
	}
	u1, former := accounts[0], accounts[1]
	if u1.Email != "user1@test.com" || u1.Name != "Test User 1" || u1.Disabled || u1.LocalID != "kYi4EvWQlQTKSfnJ3dRSP6IH3ed2" {
		t.Errorf("user1 = %+v", u1)
	}
	if former.Email != "Former.Customer@Test.com" || !former.Disabled {
		t.Errorf("the disabled customer = %+v, want disabled kept", former)
	}
	// Both hashes (standard and URL-safe base64) check the original password.
	for _, a := range accounts {
		ok, rehash, err := password.Verify("user1password", a.PasswordHash)
		if !ok || !rehash || err != nil {
			t.Errorf("%s: Verify(original password) = %v, %v, %v; want a match that asks for argon2id", a.Email, ok, rehash, err)
		}
	}

	want := []struct {
		index  int
		reason string
	}{
		{2, "no password (signs in with google.com; give the route an SSO login instead)"},
		{3, "no email address"},
		{4, "the hash is 32 bytes but the hash key 64; is the hash key the project's?"},
	}
	if len(skipped) != len(want) {
		t.Fatalf("skipped = %+v, want %d", skipped, len(want))
	}
	for i, w := range want {
		if skipped[i].Index != w.index || skipped[i].Reason != w.reason {
			t.Errorf("skipped[%d] = %+v, want users[%d] with reason %q", i, skipped[i], w.index, w.reason)
		}
	}
}

func TestReadRefusesWhatIsNotAnExport(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a CSV export", "kYi4EvWQ,user1@test.com,false,lSrf,42xE,Test User 1\n", "not a firebase auth:export JSON file"},
		{"a JSON list", `[{"email": "a@b.c"}]`, "not a firebase auth:export JSON file"},
		{"no users key", `{"accounts": []}`, "not a firebase auth:export JSON file"},
		{"users not a list", `{"users": {"a": 1}}`, `"users" is not a list`},
		{"a broken user", `{"users": [{"email": 3}]}`, "users[0]:"},
		{"cut off", `{"users": [{"email": "a@b.c"}`, "end of the users list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Read(strings.NewReader(tc.in), readmeParams(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestReadSkipsKeysBeforeTheUsers(t *testing.T) {
	in := `{"kind": "export", "meta": {"n": [1, 2]}, "users": []}`
	accounts, skipped, err := Read(strings.NewReader(in), readmeParams(t))
	if err != nil || len(accounts) != 0 || len(skipped) != 0 {
		t.Errorf("Read = %v, %v, %v", accounts, skipped, err)
	}
}

func TestBadHashParametersAreRefusedBeforeReading(t *testing.T) {
	p := readmeParams(t)
	p.MemCost = 20
	if _, _, err := Read(strings.NewReader(`{"users": []}`), p); err == nil || !strings.Contains(err.Error(), "mem cost") {
		t.Errorf("err = %v, want the mem cost refused", err)
	}
	if _, err := DecodeKey("--hash-key", "not base64!"); err == nil || !strings.Contains(err.Error(), "--hash-key is not base64") {
		t.Errorf("DecodeKey err = %v", err)
	}
}

func FuzzRead(f *testing.F) {
	data, err := os.ReadFile("testdata/users.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))
	f.Add(`{"users": [{"email": "a@b.c", "passwordHash": "AA", "salt": "AA"}]}`)
	p := readmeParams(f)
	p.Rounds, p.MemCost = 1, 1 // the fuzzer checks parsing, not scrypt
	f.Fuzz(func(t *testing.T, in string) {
		accounts, _, err := Read(strings.NewReader(in), p)
		if err != nil {
			return
		}
		for _, a := range accounts {
			if a.Email == "" || !strings.HasPrefix(a.PasswordHash, "$firebase-scrypt$") {
				t.Fatalf("account %+v from %q", a, in)
			}
		}
	})
}
