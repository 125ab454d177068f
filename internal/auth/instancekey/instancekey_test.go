package instancekey

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
)

// newStore opens a real SQLite store in a temporary directory.
func newStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// addSealedKey stores a signing key whose private part k sealed, as the
// sign-in does when it makes one.
func addSealedKey(t *testing.T, st store.Store, k *Key, kid string, created time.Time) {
	t.Helper()
	sealed, err := k.Seal([]byte("private key of "+kid), SigningKeyAAD(kid))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddSigningKey(context.Background(), &store.SigningKey{ID: kid, Algorithm: "ES256", PublicKey: []byte("pub"), PrivateKey: sealed, CreatedAt: created}); err != nil {
		t.Fatal(err)
	}
}

func fixedKey(t *testing.T, b byte) (*Key, string) {
	t.Helper()
	raw := bytes.Repeat([]byte{b}, Size)
	k, err := New(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k, base64.StdEncoding.EncodeToString(raw)
}

func mustFail(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Load succeeded, want an error mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans several lines: %q", err)
	}
}

func TestABrandNewEmbeddedStoreGetsAPrivateKeyFileOnceAndReusesIt(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	dir := filepath.Join(t.TempDir(), "data")
	src := Source{DataDir: dir, Embedded: true}
	k1, err := Load(ctx, src, st)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", info.Mode().Perm())
	}
	addSealedKey(t, st, k1, "kid-1", time.Now())
	k2, err := Load(ctx, src, st)
	if err != nil {
		t.Fatal(err)
	}
	if k1.raw != k2.raw {
		t.Error("second Load returned a different key")
	}
}

func TestAnEmbeddedStoreWithSealedKeysIsRefusedWhenItsKeyFileIsGone(t *testing.T) {
	st := newStore(t)
	k, _ := fixedKey(t, 1)
	addSealedKey(t, st, k, "kid-1", time.Now())
	dir := t.TempDir()
	_, err := Load(context.Background(), Source{DataDir: dir, Embedded: true}, st)
	mustFail(t, err, FileName+" is missing", "restore that file", EnvVar)
	if _, statErr := os.Stat(filepath.Join(dir, FileName)); statErr == nil {
		t.Error("a random key file was created for a store that already holds sealed keys")
	}
}

func TestASharedStoreNeedsAKeyEvenWhenBrandNew(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(context.Background(), Source{DataDir: dir, Store: "postgres://db.internal:5432"}, newStore(t))
	mustFail(t, err, "none given", "postgres://db.internal:5432", "moat keys init", EnvVar, "secret_key_file")
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("data_dir got %d entries, want none", len(entries))
	}
}

func TestASharedStoreStillReadsAKeyFileAnOlderMoatLeftInDataDir(t *testing.T) {
	st := newStore(t)
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	src := Source{DataDir: dir, Store: "postgres://db"}
	k, err := Load(context.Background(), src, st)
	if err != nil {
		t.Fatal(err)
	}
	addSealedKey(t, st, k, "kid-1", time.Now())
	if _, err := Load(context.Background(), src, st); err != nil {
		t.Fatalf("the file's key no longer loads: %v", err)
	}
	other, _ := fixedKey(t, 9)
	addSealedKey(t, st, other, "kid-2", time.Now().Add(time.Second))
	_, err = Load(context.Background(), src, st)
	mustFail(t, err, "cannot open the store's signing key kid-2", filepath.Join(dir, FileName))
}

func TestAKeyFromTheEnvironmentNeedsNoDisk(t *testing.T) {
	st := newStore(t)
	want, encoded := fixedKey(t, 7)
	addSealedKey(t, st, want, "kid-1", time.Now())
	// data_dir does not exist and cannot be created: nothing may touch it.
	dir := filepath.Join("/proc/self", "no-such-dir")
	k, err := Load(context.Background(), Source{Env: encoded, DataDir: dir, Store: "postgres://db"}, st)
	if err != nil {
		t.Fatal(err)
	}
	if k.raw != want.raw {
		t.Error("key is not the one from the environment")
	}
}

func TestAKeyFileIsReadAndAMissingOneSaysHowToMakeIt(t *testing.T) {
	st := newStore(t)
	path := filepath.Join(t.TempDir(), "moat.key")
	_, err := Load(context.Background(), Source{File: path}, st)
	mustFail(t, err, "does not exist", "moat keys init --file "+path)
	if err := WriteFile(path); err != nil {
		t.Fatal(err)
	}
	k, err := Load(context.Background(), Source{File: path}, st)
	if err != nil {
		t.Fatal(err)
	}
	addSealedKey(t, st, k, "kid-1", time.Now())
	if _, err := Load(context.Background(), Source{File: path}, st); err != nil {
		t.Fatalf("the file's key does not open what it sealed: %v", err)
	}
}

func TestTheEnvironmentAndAFileTogetherAreRefused(t *testing.T) {
	_, encoded := fixedKey(t, 7)
	_, err := Load(context.Background(), Source{Env: encoded, File: "/run/secrets/moat"}, newStore(t))
	mustFail(t, err, "both", "keep one")
}

func TestAKeyThatCannotOpenTheCurrentSigningKeyIsRefused(t *testing.T) {
	st := newStore(t)
	right, _ := fixedKey(t, 1)
	_, wrong := fixedKey(t, 2)
	old := time.Now().Add(-time.Hour)
	addSealedKey(t, st, right, "kid-old", old)
	addSealedKey(t, st, right, "kid-new", time.Now())
	_, err := Load(context.Background(), Source{Env: wrong}, st)
	mustFail(t, err, "cannot open the store's signing key kid-new", "same "+EnvVar)
}

func TestTheNewestCurrentSigningKeyDecides(t *testing.T) {
	// A rotation that sealed its new key with another key must not pass
	// because an older key still opens.
	st := newStore(t)
	k, encoded := fixedKey(t, 1)
	other, _ := fixedKey(t, 2)
	addSealedKey(t, st, k, "kid-old", time.Now().Add(-time.Hour))
	addSealedKey(t, st, other, "kid-new", time.Now())
	_, err := Load(context.Background(), Source{Env: encoded}, st)
	mustFail(t, err, "kid-new")
	if err := st.RetireSigningKey(context.Background(), "kid-new", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), Source{Env: encoded}, st); err != nil {
		t.Errorf("with kid-new retired, kid-old is current and opens: %v", err)
	}
}

func TestMalformedKeysAreRefused(t *testing.T) {
	for name, v := range map[string]string{
		"short":      base64.StdEncoding.EncodeToString([]byte("short")),
		"not base64": "this is not base64!",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(context.Background(), Source{Env: v}, newStore(t))
			mustFail(t, err, EnvVar, "moat keys init")
		})
	}
}

func TestWriteFileNeverOverwritesAKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.key")
	if err := WriteFile(path); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
	err := WriteFile(path)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second WriteFile = %v, want a refusal", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("the key file changed")
	}
	raw, err := decode(strings.TrimSpace(string(after)))
	if err != nil || len(raw) != Size {
		t.Errorf("written key decodes to %d bytes, %v", len(raw), err)
	}
}

func TestSourceForReadsTheConfigAndTheEnvironment(t *testing.T) {
	t.Setenv(EnvVar, " abc ")
	src := SourceFor(&config.Config{DataDir: "/d", SecretKeyFile: "/k", Store: "postgres://moat:hunter2@db:5432/moat?sslmode=require"})
	want := Source{Env: "abc", File: "/k", DataDir: "/d", Store: "postgres://db:5432"}
	if src != want {
		t.Errorf("SourceFor = %+v, want %+v", src, want)
	}
	if src := SourceFor(&config.Config{DataDir: "/d"}); !src.Embedded || src.Store != "at /d/moat.db" {
		t.Errorf("embedded default: %+v", src)
	}
}

func TestSealedSecretsOpenOnlyWithTheSameKeyAndContext(t *testing.T) {
	k, _ := New(bytes.Repeat([]byte{1}, Size))
	other, _ := New(bytes.Repeat([]byte{2}, Size))
	ct, err := k.Seal([]byte("secret"), []byte("kid-1"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k.Open(ct, []byte("kid-1")); err != nil || string(pt) != "secret" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	if _, err := k.Open(ct, []byte("kid-2")); err == nil {
		t.Error("opened with another context")
	}
	if _, err := other.Open(ct, []byte("kid-1")); err == nil {
		t.Error("opened with another key")
	}
	if bytes.Equal(k.Derive("csrf"), k.Derive("other")) {
		t.Error("derived keys for two purposes are equal")
	}
}
