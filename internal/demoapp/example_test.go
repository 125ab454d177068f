package demoapp_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/moat-dev/moat/internal/demoapp"
)

// The demo is a plain http.Handler: `moat demo` serves it on a loopback
// port and routes a public route to it.
func ExampleNew() {
	srv := httptest.NewServer(demoapp.New())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 ok
}
