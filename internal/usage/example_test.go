package usage_test

import (
	"fmt"
	"time"

	"github.com/moat-dev/moat/internal/usage"
)

// Span writes durations the way the usage page and `moat usage` show them.
func ExampleSpan() {
	for _, d := range []time.Duration{42 * time.Second, 17 * time.Minute, 2*time.Hour + 5*time.Minute, 50 * time.Hour} {
		fmt.Println(usage.Span(d))
	}
	// Output:
	// 42s
	// 17m
	// 2h 05m
	// 2d 2h
}

// SessionKey is what the store keeps instead of a session's id hash.
func ExampleSessionKey() {
	fmt.Println(len(usage.SessionKey("f3a9c1d2e4b5a697")), usage.SessionKey("a") == usage.SessionKey("a"), usage.SessionKey("a") == usage.SessionKey("b"))
	// Output: 24 true false
}
