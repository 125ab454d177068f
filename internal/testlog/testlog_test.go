package testlog

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
)

func TestBufferTakesConcurrentWritesAndDecodesJSONLines(t *testing.T) {
	var b Buffer
	log := slog.New(slog.NewJSONHandler(&b, nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { log.Info("hello", "n", i) })
	}
	wg.Wait()
	fmt.Fprintln(&b, "not JSON")
	fmt.Fprintln(&b, "null")
	recs := b.Records()
	if len(recs) != 8 {
		t.Fatalf("%d records, want 8:\n%s", len(recs), b.String())
	}
	for _, r := range recs {
		if r["msg"] != "hello" {
			t.Errorf("record %v", r)
		}
	}
}
