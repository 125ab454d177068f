package forwardauth_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/moat-dev/moat/internal/forwardauth"
)

// nginx's auth_request, configured as the README shows, asks moat about a
// browser's request for /reports?q=3 on dash.example.com.
func ExampleOriginal() {
	r := httptest.NewRequest(http.MethodGet, "http://moat:8443"+forwardauth.NginxPath, nil)
	r.Header.Set("X-Forwarded-Method", "GET")
	r.Header.Set("X-Forwarded-Proto", "https")
	r.Header.Set("X-Forwarded-Host", "dash.example.com")
	r.Header.Set("X-Forwarded-Uri", "/reports?q=3")
	r.Header.Set("Cookie", "__Host-moat-session=…; theme=dark")
	orig, err := forwardauth.Original(r)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(orig.Method, orig.URL)
	fmt.Println("the app gets the cookies:", forwardauth.AppCookie(orig.Header))
	// Output:
	// GET https://dash.example.com/reports?q=3
	// the app gets the cookies: theme=dark
}
