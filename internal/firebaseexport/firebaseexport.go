// Package firebaseexport reads the accounts file that `firebase auth:export`
// writes for a Firebase or Identity Platform project (JSON:
// {"users": [{localId, email, passwordHash, salt, disabled, …}]}), so that
// moat's user directory can take the accounts over with their passwords.
//
// Each password hash stays in Firebase's modified scrypt, encoded with the
// project's hash parameters by password.FirebaseHash; moat checks it at the
// next sign-in and rehashes it to argon2id then.
package firebaseexport

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moat-dev/moat/internal/auth/password"
)

// MaxFileSize bounds the export read, so a wrong path (a device, a disk
// image) fails instead of filling memory. A million accounts take about
// 500 MiB.
const MaxFileSize = 1 << 30

// Account is one exported user, ready for moat's directory.
type Account struct {
	// LocalID is Firebase's uid, for messages.
	LocalID string
	// Email is the address as exported (not yet normalized or checked).
	Email string
	// Name is the displayName, if any.
	Name     string
	Disabled bool
	// PasswordHash is the encoded form password.Verify checks.
	PasswordHash string
}

// Skipped is an exported user that cannot become a password user, and why.
type Skipped struct {
	// Index is the user's position in the file's users list, from 0.
	Index   int
	LocalID string
	Email   string
	Reason  string
}

// record is the part of an exported user moat reads.
type record struct {
	LocalID      string `json:"localId"`
	Email        string `json:"email"`
	DisplayName  string `json:"displayName"`
	PasswordHash string `json:"passwordHash"`
	Salt         string `json:"salt"`
	Disabled     bool   `json:"disabled"`
	// ProviderUserInfo names the sign-in methods, for a skipped user's
	// reason (google.com, phone, …).
	ProviderUserInfo []struct {
		ProviderID string `json:"providerId"`
	} `json:"providerUserInfo"`
}

// Read decodes an export from r: the users with a password hash as
// Accounts, every other user as Skipped with the reason. p are the
// project's hash parameters; a hash of the wrong size for them is a
// reason, since such a hash could never match. The error is for a file that
// is not an export at all.
func Read(r io.Reader, p password.FirebaseParams) ([]Account, []Skipped, error) {
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(io.LimitReader(r, MaxFileSize))
	if err := enterUsers(dec); err != nil {
		return nil, nil, err
	}
	var accounts []Account
	var skipped []Skipped
	for i := 0; dec.More(); i++ {
		var rec record
		if err := dec.Decode(&rec); err != nil {
			return nil, nil, fmt.Errorf("users[%d]: %w", i, err)
		}
		a, reason := account(rec, p)
		if reason != "" {
			skipped = append(skipped, Skipped{Index: i, LocalID: rec.LocalID, Email: rec.Email, Reason: reason})
			continue
		}
		accounts = append(accounts, a)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("end of the users list: %w", err)
	}
	return accounts, skipped, nil
}

// enterUsers reads up to the first element of the top-level "users" list,
// skipping any other key.
func enterUsers(dec *json.Decoder) error {
	notExport := errors.New(`not a firebase auth:export JSON file: expected {"users": [...]} (export with: firebase auth:export users.json --format=json)`)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return notExport
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return notExport
		}
		if key != "users" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return notExport
			}
			continue
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return errors.New(`"users" is not a list`)
		}
		return nil
	}
	return notExport
}

// account turns one record into an Account, or says why it cannot.
func account(rec record, p password.FirebaseParams) (Account, string) {
	if rec.Email == "" {
		return Account{}, "no email address"
	}
	if rec.PasswordHash == "" {
		var providers []string
		for _, pi := range rec.ProviderUserInfo {
			if pi.ProviderID != "" && pi.ProviderID != "password" {
				providers = append(providers, pi.ProviderID)
			}
		}
		if len(providers) > 0 {
			return Account{}, "no password (signs in with " + strings.Join(providers, ", ") + "; give the route an SSO login instead)"
		}
		return Account{}, "no password hash in the export"
	}
	hash, err := decodeBase64(rec.PasswordHash)
	if err != nil {
		return Account{}, "passwordHash is not base64"
	}
	salt, err := decodeBase64(rec.Salt)
	if err != nil {
		return Account{}, "salt is not base64"
	}
	enc, err := password.FirebaseHash(p, salt, hash)
	if err != nil {
		return Account{}, strings.TrimPrefix(err.Error(), "firebase hash: ")
	}
	return Account{LocalID: rec.LocalID, Email: rec.Email, Name: rec.DisplayName, Disabled: rec.Disabled, PasswordHash: enc}, ""
}

// decodeBase64 accepts the standard and the URL-safe alphabet, padded or
// not: firebase-tools has written both over its versions.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// DecodeKey decodes a hash parameter given in base64 as the console shows
// it (--hash-key, --salt-separator); what names it for the error.
func DecodeKey(what, s string) ([]byte, error) {
	b, err := decodeBase64(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%s is not base64 as the Firebase console shows it: %w", what, err)
	}
	return b, nil
}
