package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/store/storetest"
)

// A rotation publishes the new key at once and signs with it only after
// twice identity.jwks_max_age; the key it replaces signs until then.
func TestKeysRotatePublishesANewKeyThatSignsAfterTheJWKSCacheLifetime(t *testing.T) {
	e := newCLIEnv(t)
	t.Setenv("MOAT_SECRET_KEY", "")
	first := e.mustMoat(t, "", "keys", "rotate")
	if !strings.HasPrefix(first, "new signing key ") {
		t.Fatalf("rotate said %q", first)
	}
	second := e.mustMoat(t, "", "keys", "rotate")
	if !strings.Contains(second, "published in /_moat/jwks.json now, signing from ") {
		t.Fatalf("rotate said %q", second)
	}
	out := e.mustMoat(t, "", "keys", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "published, signing from ") || !strings.Contains(lines[2], "signing until ") {
		t.Fatalf("keys list:\n%s", out)
	}
	keys, err := assertion.ListKeys(t.Context(), e.store(t))
	if err != nil || len(keys) != 2 || !keys[1].Published {
		t.Fatalf("ListKeys = %+v, %v", keys, err)
	}
	if audit := e.mustMoat(t, "", "audit"); !strings.Contains(audit, "keys.rotate") {
		t.Errorf("no keys.rotate in the audit log:\n%s", audit)
	}
}

func TestKeysInitPrintsAKeyOrWritesAFileItNeverOverwrites(t *testing.T) {
	e := newCLIEnv(t)
	out := e.mustMoat(t, "", "keys", "init")
	key := strings.SplitN(out, "\n", 2)[0]
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != instancekey.Size {
		t.Fatalf("keys init printed %q: want base64 of %d bytes", key, instancekey.Size)
	}
	if again := strings.SplitN(e.mustMoat(t, "", "keys", "init"), "\n", 2)[0]; again == key {
		t.Error("two runs printed the same key")
	}
	path := filepath.Join(t.TempDir(), "moat.key")
	e.mustMoat(t, "", "keys", "init", "--file", path)
	written, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err = e.moat(t, "", "keys", "init", "--file", path)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("keys init over an existing file: %v\n%s", err, out)
	}
	if now, _ := os.ReadFile(path); string(now) != string(written) {
		t.Error("keys init changed an existing key file")
	}
}

// withKeyFile rewrites e's config to name a secret_key_file.
func (e *cliEnv) withKeyFile(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.cfg, append(data, []byte("secret_key_file: "+path+"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestKeysRotateRefusesAKeyThatCannotOpenTheStoresKey(t *testing.T) {
	e := newCLIEnv(t)
	t.Setenv("MOAT_SECRET_KEY", "")
	e.mustMoat(t, "", "keys", "rotate") // a brand-new store: data_dir/instance.key is made
	before, err := assertion.ListKeys(t.Context(), e.store(t))
	if err != nil {
		t.Fatal(err)
	}

	other := filepath.Join(t.TempDir(), "other.key")
	e.mustMoat(t, "", "keys", "init", "--file", other)
	e.withKeyFile(t, other)
	out, err := e.moat(t, "", "keys", "rotate")
	if err == nil || !strings.Contains(err.Error(), "cannot open the store's signing key") {
		t.Fatalf("rotate with another key: %v\n%s", err, out)
	}
	if after, _ := assertion.ListKeys(t.Context(), e.store(t)); len(after) != len(before) {
		t.Errorf("a refused rotate still added a key: %d keys, want %d", len(after), len(before))
	}
	if strings.Count(errorText(err), "\n") != 1 {
		t.Errorf("error is not one line: %q", errorText(err))
	}
}

func TestKeysRotateOnASharedStoreNeedsTheKeyAndWorksWithIt(t *testing.T) {
	e := newCLIEnvWithStore(t, storetest.Postgres(t))
	t.Setenv("MOAT_SECRET_KEY", "")
	out, err := e.moat(t, "", "keys", "rotate")
	if err == nil || !strings.Contains(err.Error(), "moat keys init") {
		t.Fatalf("rotate on PostgreSQL without a key: %v\n%s", err, out)
	}
	if _, statErr := os.Stat(filepath.Join(e.dataDir, instancekey.FileName)); statErr == nil {
		t.Error("a key file was made in data_dir for a shared store")
	}
	key, err := instancekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MOAT_SECRET_KEY", key)
	e.mustMoat(t, "", "keys", "rotate")
	e.mustMoat(t, "", "keys", "rotate")
	if keys, err := assertion.ListKeys(t.Context(), e.store(t)); err != nil || len(keys) != 2 {
		t.Fatalf("ListKeys = %d keys, %v; want 2", len(keys), err)
	}
}

func TestServeRefusesAKeyThatCannotOpenTheStoresKey(t *testing.T) {
	e := newCLIEnv(t)
	t.Setenv("MOAT_SECRET_KEY", "")
	e.mustMoat(t, "", "keys", "rotate")
	wrong, err := instancekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MOAT_SECRET_KEY", wrong)
	out, err := e.moat(t, "", "serve")
	if err == nil || !strings.Contains(err.Error(), "cannot open the store's signing key") {
		t.Fatalf("serve with another key: %v\n%s", err, out)
	}
}
