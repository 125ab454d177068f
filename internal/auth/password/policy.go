package password

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// common-passwords.txt.gz is the list of 20,000 common passwords (lower-
// cased and de-duplicated) that Django ships with its
// CommonPasswordValidator (BSD-3-Clause), created by Royce Williams from
// leaked-password corpora.
//
//go:embed common-passwords.txt.gz
var commonGz []byte

var common = sync.OnceValue(func() map[string]struct{} {
	zr, err := gzip.NewReader(bytes.NewReader(commonGz))
	if err != nil {
		panic("password: embedded list: " + err.Error())
	}
	set := make(map[string]struct{}, 20000)
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		if w := strings.TrimSpace(sc.Text()); w != "" {
			set[w] = struct{}{}
		}
	}
	if err := sc.Err(); err != nil {
		panic("password: embedded list: " + err.Error())
	}
	return set
})

// IsCommon reports whether pw, ignoring case and surrounding spaces, is in
// the embedded list of common passwords.
func IsCommon(pw string) bool {
	_, ok := common()[strings.ToLower(strings.TrimSpace(pw))]
	return ok
}

// Policy is what a new password must meet.
type Policy struct {
	// MinLength is the fewest characters (not bytes) allowed; below 8 means
	// 8. Configured by identity.passwords.min_length (default 12).
	MinLength int
}

// PolicyError is a password refused by the policy; its message can be shown
// to the user as it is.
type PolicyError struct {
	Reason string
}

func (e *PolicyError) Error() string { return e.Reason }

// Check returns a *PolicyError saying why pw may not be used by the user
// with this email, or nil.
func (p Policy) Check(pw, email string) error {
	minLen := max(p.MinLength, 8)
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw):
		return &PolicyError{"the password is not valid UTF-8 text"}
	case len(pw) > MaxLength:
		return &PolicyError{fmt.Sprintf("the password is too long: at most %d bytes", MaxLength)}
	case n < minLen:
		return &PolicyError{fmt.Sprintf("the password is too short: use at least %d characters (it has %d)", minLen, n)}
	case strings.TrimSpace(pw) == "":
		return &PolicyError{"the password is only spaces"}
	case email != "" && (strings.EqualFold(strings.TrimSpace(pw), strings.TrimSpace(email)) ||
		strings.EqualFold(strings.TrimSpace(pw), localPart(email))):
		return &PolicyError{"the password must not be your email address"}
	case IsCommon(pw):
		return &PolicyError{"the password is on the list of commonly used passwords: choose another"}
	case isRepetitive(pw):
		return &PolicyError{"the password is one character repeated: choose another"}
	}
	return nil
}

func localPart(email string) string {
	local, _, _ := strings.Cut(strings.TrimSpace(email), "@")
	return local
}

func isRepetitive(pw string) bool {
	first, _ := utf8.DecodeRuneInString(pw)
	for _, r := range pw {
		if r != first {
			return false
		}
	}
	return true
}
