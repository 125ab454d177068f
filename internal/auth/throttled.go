package auth

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/web"
)

// Bounds of the hold on refused attempts.
const (
	// maxHold is the longest a refused attempt's answer waits.
	maxHold = time.Second
	// maxHeld bounds the answers waiting at once (a goroutine and a
	// connection's buffers each): past it, answers go at once.
	maxHeld = 1024
)

// refusalHold slows the answers to sign-in attempts the throttle refused:
// each waits up to maxHold (less when the refusal ends sooner) before it
// is written. A client hammering the sign-in over a few connections then
// gets a few answers a second rather than thousands, which had taken the
// cores from signed-in traffic (a flood from one address raised signed-in
// p99 2.4–2.9×). The wait holds no hashing slot and no store connection.
type refusalHold struct {
	max   time.Duration
	slots chan struct{}
}

func newRefusalHold() refusalHold {
	return refusalHold{max: maxHold, slots: make(chan struct{}, maxHeld)}
}

// wait holds for min(d, h.max), unless maxHeld answers wait already or
// ctx ends; it reports whether it held.
func (h refusalHold) wait(ctx context.Context, d time.Duration) bool {
	d = min(d, h.max)
	if d <= 0 {
		return false
	}
	select {
	case h.slots <- struct{}{}:
	default:
		return false
	}
	defer func() { <-h.slots }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// throttled answers an attempt the throttle refused (v), without looking
// at what was typed: 429 with Retry-After, after the hold. A person's page
// navigation gets its page back (show renders it with the message: the
// form again, saying why, from the catalogue's waitKey with the seconds to
// wait, or lockedKey with the minutes of a lock); a script, and anyone
// while maxHeld answers wait already, the short JSON answer: rendering a
// page for every attempt of a flood was most of its cost.
func (s *Service) throttled(w http.ResponseWriter, r *http.Request, v throttle.Verdict, waitKey, lockedKey string, show func(message string)) {
	secs := int((v.Wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	held := s.p.held.wait(r.Context(), v.Wait)
	if !web.WantsHTML(r) || !held && s.p.held.max > 0 {
		web.Error(w, r, http.StatusTooManyRequests, "too_many_requests")
		return
	}
	if v.Reason == throttle.ReasonLocked {
		show(web.T(web.Lang(r), lockedKey, (secs+59)/60))
		return
	}
	show(web.T(web.Lang(r), waitKey, secs))
}

// logThrottleError logs a throttle that could not be read or written;
// the caller answers 503.
func (s *Service) logThrottleError(r *http.Request, what string, err error) {
	info := request.From(r)
	s.p.logger.Error(what, "client_ip", clientIP(info), "request_id", info.ID, "err", err)
}
