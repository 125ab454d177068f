package access

import (
	"net/url"
	"strings"
)

// maxReturnTo bounds the return_to parameter.
const maxReturnTo = 2048

// SafeReturnTo returns s when it is a path on this host ("/app?x=1"), and
// "/" otherwise: no scheme or host, no "//" or "/\" (which browsers read as
// another host), no backslashes, whitespace or control characters (browsers
// drop tabs and newlines, turning "/\t/evil" into "//evil"), and none of
// these hidden behind percent-encoding. Pages of the sign-in flow itself
// also give "/", to avoid loops.
func SafeReturnTo(s string) string {
	if !validReturnTo(s) {
		return "/"
	}
	return s
}

func validReturnTo(s string) bool {
	if len(s) == 0 || len(s) > maxReturnTo || s[0] != '/' {
		return false
	}
	if !plainPath(s, false) {
		return false
	}
	decoded := s
	for range 3 {
		next, err := url.PathUnescape(decoded)
		if err != nil || !plainPath(next, true) {
			return false
		}
		if next == decoded {
			break
		}
		decoded = next
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil {
		return false
	}
	p := strings.ToLower(u.Path)
	for _, loop := range []string{"/_moat/login", "/_moat/logout", "/_moat/password"} {
		if strings.HasPrefix(p, loop) {
			return false
		}
	}
	return true
}

// plainPath reports whether s starts with a single "/" and holds no
// backslash, control character or (unless spaces, for decoded text) space.
func plainPath(s string, spaces bool) bool {
	if len(s) == 0 || s[0] != '/' || len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c == 0x7f || c == '\\' || c == ' ' && !spaces {
			return false
		}
	}
	return true
}
