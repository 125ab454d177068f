package assertion_test

import (
	"fmt"
	"net/url"

	"github.com/moat-dev/moat/internal/identity/assertion"
)

// A display name travels in X-Moat-User-Name percent-encoded: an ASCII name
// arrives as it is, any other is decoded by the app (Python:
// urllib.parse.unquote).
func ExampleNameHeader() {
	for _, name := range []string{"Alice Smith", "Jürgen Weiß", "山田 花子", "100% Bob"} {
		v := assertion.NameHeader(name)
		back, _ := url.PathUnescape(v)
		fmt.Printf("%s -> %s (%v)\n", name, v, back == name)
	}
	// Output:
	// Alice Smith -> Alice Smith (true)
	// Jürgen Weiß -> J%C3%BCrgen Wei%C3%9F (true)
	// 山田 花子 -> %E5%B1%B1%E7%94%B0 %E8%8A%B1%E5%AD%90 (true)
	// 100% Bob -> 100%25 Bob (true)
}
