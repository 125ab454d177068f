package redisconn

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestABadURLIsRefusedWithoutRepeatingIt(t *testing.T) {
	_, err := Counters.NewClient("redis://:hunter2@[::1")
	if !errors.Is(err, ErrBadURL) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("err = %v, want ErrBadURL without the URL", err)
	}
	c, err := Counters.NewClient("redis://:hunter2@127.0.0.1:6379/2")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if o := c.Options(); o.DialTimeout != Counters.Dial || o.ReadTimeout != Counters.IO || o.DB != 2 {
		t.Errorf("options %+v", o)
	}
}

func TestBackoffFollowsFailuresButNotTheCallersOwnEnd(t *testing.T) {
	var b Backoff
	if b.Down() {
		t.Fatal("down before any call")
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	b.Record(ended, context.Canceled)
	if b.Down() {
		t.Error("down after the caller gave up")
	}
	b.Record(context.Background(), errors.New("connection refused"))
	if !b.Down() {
		t.Error("not down after a failure")
	}
	b.Record(context.Background(), nil)
	if b.Down() {
		t.Error("still down after a success")
	}
}
