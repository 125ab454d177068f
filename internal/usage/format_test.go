package usage

import (
	"testing"
	"time"
)

func TestSpanReadsLikeAPersonWritesIt(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                               "0s",
		45 * time.Second:                "45s",
		12*time.Minute + 59*time.Second: "12m",
		3*time.Hour + 5*time.Minute:     "3h 05m",
		52*time.Hour + 30*time.Minute:   "2d 4h",
		-time.Second:                    "-",
	} {
		if got := Span(d); got != want {
			t.Errorf("Span(%s) = %q, want %q", d, got, want)
		}
	}
}
