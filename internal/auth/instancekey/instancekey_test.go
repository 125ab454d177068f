package instancekey

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadCreatesAPrivateKeyFileOnceAndReusesIt(t *testing.T) {
	t.Setenv(EnvVar, "")
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", st.Mode().Perm())
	}
	k2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.raw != k2.raw {
		t.Error("second Load returned a different key")
	}
}

func TestLoadPrefersTheEnvironment(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, Size)
	t.Setenv(EnvVar, base64.StdEncoding.EncodeToString(raw))
	dir := t.TempDir()
	k, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.raw[:], raw) {
		t.Error("key is not the one from the environment")
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		t.Error("a key file was created although the environment set the key")
	}
}

func TestLoadRefusesAShortKey(t *testing.T) {
	t.Setenv(EnvVar, base64.StdEncoding.EncodeToString([]byte("short")))
	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("a 5-byte key was accepted")
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
