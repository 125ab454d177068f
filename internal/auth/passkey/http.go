package passkey

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/moat-dev/moat/internal/auth/mfa"
	"github.com/moat-dev/moat/internal/csrf"
	"github.com/moat-dev/moat/internal/web"
)

// Problem is what a person sees of a ceremony's error (the one mapping,
// for the sign-in and the account page alike): a refusal with its status
// and message, or, for anything else, 503 with the cause logged.
func Problem(err error) error {
	var te *mfa.ThrottledError
	switch {
	case errors.As(err, &te):
		secs := int(te.Wait/time.Second) + 1
		return web.NewProblem(http.StatusTooManyRequests, "passkey.throttled", secs).With("Retry-After", strconv.Itoa(secs))
	case errors.Is(err, ErrInvalid):
		return web.NewProblem(http.StatusUnauthorized, "passkey.failed")
	case errors.Is(err, ErrExpired):
		return web.NewProblem(http.StatusUnauthorized, "passkey.expired")
	case errors.Is(err, ErrCloned):
		return web.NewProblem(http.StatusForbidden, "passkey.cloned")
	case errors.Is(err, ErrNone):
		return web.NewProblem(http.StatusNotFound, "passkey.none_here")
	case errors.Is(err, ErrExists):
		return web.NewProblem(http.StatusConflict, "passkey.exists")
	case errors.Is(err, ErrTooMany):
		return web.NewProblem(http.StatusConflict, "passkey.too_many", MaxPerUser)
	case errors.Is(err, ErrName):
		return web.NewProblem(http.StatusBadRequest, "passkey.bad_name", MaxName)
	case errors.Is(err, ErrBadRP):
		return web.NewProblem(http.StatusBadRequest, "passkey.bad_host")
	}
	return web.Unavailable(err)
}

// Request is what a page's script sends to finish a ceremony: the sealed
// state its begin returned, the credential as PublicKeyCredential.toJSON()
// gives it, and, when adding a passkey, its name.
type Request struct {
	State      string          `json:"state"`
	Credential json.RawMessage `json:"credential"`
	Name       string          `json:"name"`
}

// ReadRequest reads a ceremony's JSON body, bounded; an empty body is an
// empty Request (a begin).
func ReadRequest(w http.ResponseWriter, r *http.Request) (Request, error) {
	var in Request
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxResponse+maxState+1024))
	if err != nil {
		return in, web.NewProblem(http.StatusRequestEntityTooLarge, "body_too_large")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return in, nil
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return in, &web.Problem{Status: http.StatusBadRequest, Key: "bad_request", Err: err}
	}
	return in, nil
}

// CheckToken checks a ceremony call of a page's script: the page's CSRF
// token in X-CSRF-Token, from the same origin. A refusal is the sign-in
// pages' own (the form expired: reload the page).
func CheckToken(g *csrf.Guard, r *http.Request) error {
	if !g.Check(r, r.Header.Get("X-CSRF-Token")) {
		return web.NewProblem(http.StatusForbidden, "auth.csrf")
	}
	return nil
}
