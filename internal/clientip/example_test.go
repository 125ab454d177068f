package clientip_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/moat-dev/moat/internal/clientip"
)

func ExampleResolver_Resolve() {
	res, _ := clientip.New([]string{"10.0.0.0/8"})

	// A load balancer at 10.0.0.5 forwards a client that claimed to be
	// 127.0.0.2: the right-most untrusted hop is the real client.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.5:41000"
	r.Header.Set("X-Forwarded-For", "127.0.0.2, 203.0.113.9")
	fmt.Println(res.Resolve(r))

	// The same header straight from the internet is not believed.
	r.RemoteAddr = "198.51.100.7:41000"
	fmt.Println(res.Resolve(r))
	// Output:
	// 203.0.113.9
	// 198.51.100.7
}
