package login

import (
	"net/http"
	"strconv"
	"time"

	"github.com/moat-dev/moat/internal/identity/throttle"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/web"
)

// throttled answers an attempt the throttle refused (v), without looking
// at what was typed: 429 with Retry-After, after the Hold. A person's page
// navigation gets its page back (show renders it with the message: the
// form again, saying why, from the catalogue's waitKey with the seconds to
// wait, or lockedKey with the minutes of a lock); a script, and anyone
// while the Hold's slots are full, the short JSON answer: rendering a
// page for every attempt of a flood was most of its cost.
func (pg *Pages) throttled(w http.ResponseWriter, r *http.Request, v throttle.Verdict, waitKey, lockedKey string, show func(message string)) {
	secs := int((v.Wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	held := pg.o.Hold.Wait(r.Context(), v.Wait)
	if !web.WantsHTML(r) || !held && pg.o.Hold.Max > 0 {
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
func (pg *Pages) logThrottleError(r *http.Request, what string, err error) {
	info := request.From(r)
	pg.log.Error(what, "client_ip", clientIP(info), "request_id", info.ID, "err", err)
}
