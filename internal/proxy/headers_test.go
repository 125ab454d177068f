package proxy

import (
	"net/http"
	"testing"
)

var ownedNameCases = []struct {
	name  string
	owned bool
}{
	{"X-Moat-User-Email", true},
	{"x-moat-user-email", true},
	{"X-MOAT-USER", true},
	{"X_Moat_User", true},
	{"x_MOAT_user", true},
	{"X-Moat_User-Id", true},
	{"X.Moat.User", true},
	{"X-Goog-Authenticated-User-Email", true},
	{"X_Goog_Iap_Jwt_Assertion", true},
	{"x-goog-iap-jwt-assertion", true},
	{"X-Moatish", false},
	{"X-Moat", false},
	{"X-Google-Thing", false},
	{"Moat-User", false},
	{"X-Forwarded-For", true},
	{"X_Forwarded_For", true},
	{"x-forwarded-prefix", true},
	{"X.Forwarded.Port", true},
	{"Forwarded", true},
	{"X_Real_IP", true},
	{"true-client-ip", true},
	{"X-Original-URL", true},
	{"X_Request_Id", true},
	{"X-Forwardedx", false},
	{"Forwarded-For", false},
	{"X-Real-Ip-Extra", false},
	{"Content-Type", false},
}

func TestOwnedHeaderNamesIncludeEveryLookAlike(t *testing.T) {
	for _, tc := range ownedNameCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := owned(tc.name); got != tc.owned {
				t.Fatalf("owned(%q) = %v, want %v", tc.name, got, tc.owned)
			}
		})
	}
}

func TestStripOwned(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{
			"deletes moat's and Google's headers in any spelling and keeps the rest",
			http.Header{"X-Moat-User": {"a"}, "X_moat_user": {"b"}, "X-Goog-Iap-Jwt-Assertion": {"c"}, "Accept": {"*/*"}},
			http.Header{"Accept": {"*/*"}},
		},
		{
			"drops moat's cookies and keeps the app's, in order and as written",
			http.Header{"Cookie": {`a=1; __Host-moat_session=xyz; moat_lang=ja; b="q w"; _xsrf=2|abc`}},
			http.Header{"Cookie": {`a=1; b="q w"; _xsrf=2|abc`}},
		},
		{
			"drops moat's cookies whatever their case",
			http.Header{"Cookie": {"MOAT_x=1; __host-MOAT=2; app=3"}},
			http.Header{"Cookie": {"app=3"}},
		},
		{
			"deletes the Cookie header when only moat's cookies were in it",
			http.Header{"Cookie": {"__Host-moat_session=xyz"}, "Accept": {"*/*"}},
			http.Header{"Accept": {"*/*"}},
		},
		{
			"joins the several Cookie headers an HTTP/2 client sends",
			http.Header{"Cookie": {"a=1", "moat_csrf=2", "b=3"}},
			http.Header{"Cookie": {"a=1; b=3"}},
		},
		{
			"keeps an app cookie whose value merely mentions moat",
			http.Header{"Cookie": {"app=moat_x"}},
			http.Header{"Cookie": {"app=moat_x"}},
		},
		{
			"keeps an app cookie that only contains moat_ in its name",
			http.Header{"Cookie": {"my_moat_pref=1"}},
			http.Header{"Cookie": {"my_moat_pref=1"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			StripOwned(tc.in)
			if len(tc.in) != len(tc.want) {
				t.Fatalf("got %v, want %v", tc.in, tc.want)
			}
			for k, v := range tc.want {
				if g := tc.in[k]; len(g) != len(v) || g[0] != v[0] {
					t.Fatalf("%s = %q, want %q", k, g, v)
				}
			}
		})
	}
}

func FuzzStripOwned(f *testing.F) {
	f.Add("X_Moat_User", "a=1; moat_x=2")
	f.Fuzz(func(t *testing.T, name, cookie string) {
		h := http.Header{name: {"v"}, "Cookie": {cookie}}
		StripOwned(h)
		for k := range h {
			if owned(k) {
				t.Fatalf("owned header %q survived", k)
			}
		}
		for _, c := range (&http.Request{Header: h}).Cookies() {
			if ownedCookie(c.Name) {
				t.Fatalf("owned cookie %q survived in %q", c.Name, h.Get("Cookie"))
			}
		}
	})
}
