package web

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// Every passkey message is in both languages, every refusal has a title
// and a detail, and every passkey key a template names exists.
func TestEveryPasskeyMessageIsInEnglishAndJapanese(t *testing.T) {
	en, ja := passkeyMessages["en"], passkeyMessages["ja"]
	for k := range en {
		if _, ok := ja[k]; !ok {
			t.Errorf("%s has no Japanese", k)
		}
	}
	for k := range ja {
		if _, ok := en[k]; !ok {
			t.Errorf("%s has no English", k)
		}
	}
	for _, k := range []string{"passkey.failed", "passkey.expired", "passkey.cloned", "passkey.throttled", "passkey.none_here", "passkey.exists",
		"passkey.too_many", "passkey.bad_name", "passkey.bad_host", "passkey.reauth", "passkey.verify_first", "passkey.sso", "passkey.restart"} {
		for _, part := range []string{".title", ".detail"} {
			if _, ok := en[k+part]; !ok {
				t.Errorf("the refusal %s has no %s", k, part)
			}
		}
	}
	named := regexp.MustCompile(`"(passkey\.[a-z_.]+)"`)
	err := fs.WalkDir(templateFS, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := fs.ReadFile(templateFS, path)
		if err != nil {
			return err
		}
		for _, m := range named.FindAllStringSubmatch(string(raw), -1) {
			if _, ok := en[m[1]]; !ok && !strings.HasSuffix(m[1], ".") {
				t.Errorf("%s names %s, which the catalogue lacks", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
