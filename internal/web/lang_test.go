package web

import (
	"net/http"
	"net/url"
	"testing"
)

func TestLangPicksTheSwitchThenTheCookieThenAcceptLanguage(t *testing.T) {
	for _, tc := range []struct {
		query, cookie, accept, want string
	}{
		{"", "", "", "en"},
		{"", "", "ja", "ja"},
		{"", "", "ja-JP,ja;q=0.9,en;q=0.8", "ja"},
		{"", "", "en;q=0.5, ja;q=0.9", "ja"},
		{"", "", "fr, ja;q=0.1", "ja"},
		{"", "", "ja;q=abc, en", "en"},
		{"", "", "de, fr", "en"},
		{"", "ja", "en", "ja"},
		{"en", "ja", "ja", "en"},
		{"xx", "yy", "ja", "ja"},
	} {
		r := &http.Request{URL: &url.URL{RawQuery: url.Values{"lang": {tc.query}}.Encode()}, Header: http.Header{}}
		if tc.accept != "" {
			r.Header.Set("Accept-Language", tc.accept)
		}
		if tc.cookie != "" {
			r.AddCookie(&http.Cookie{Name: LangCookie, Value: tc.cookie})
		}
		if got := Lang(r); got != tc.want {
			t.Errorf("Lang(lang=%q, cookie %q, Accept-Language %q) = %q, want %q", tc.query, tc.cookie, tc.accept, got, tc.want)
		}
	}
}

// FuzzLang checks that whatever a client sends, the page is in a language
// moat has, chosen without a panic.
func FuzzLang(f *testing.F) {
	for _, s := range []string{"ja", "en-US,en;q=0.9", "ja;q=1e308, en;q=-1", "ja;q=NaN", ";;,,", "ja;q=0x1p-2", "*"} {
		f.Add(s, "", "")
	}
	f.Add("", "ja", "en")
	f.Fuzz(func(t *testing.T, accept, cookie, query string) {
		r := &http.Request{URL: &url.URL{RawQuery: "lang=" + url.QueryEscape(query)}, Header: http.Header{
			"Accept-Language": {accept},
			"Cookie":          {LangCookie + "=" + cookie},
		}}
		if got := Lang(r); got != "en" && got != "ja" {
			t.Fatalf("Lang = %q", got)
		}
	})
}
