package fanout_test

import (
	"context"
	"fmt"

	"github.com/moat-dev/moat/internal/fanout"
)

// An admin revokes a session on one instance; every instance, this one
// included, drops it from its cache. A Resync means events may have been
// missed: drop everything and poll.
func Example() {
	ctx := context.Background()
	bus, err := fanout.Open(ctx, "/var/lib/moat/moat.db", "", nil) // or postgres://… / redis://…
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bus.Close()
	sub := bus.Subscribe()

	_ = bus.Publish(ctx, fanout.Event{Kind: fanout.SessionRevoked, ID: "5e884898da28047151d0e56f8dc62927"})

	switch e := <-sub.C; e.Kind {
	case fanout.SessionRevoked:
		fmt.Println("forget session", e.ID)
	case fanout.Resync:
		fmt.Println("forget every session")
	}
	// Output: forget session 5e884898da28047151d0e56f8dc62927
}
