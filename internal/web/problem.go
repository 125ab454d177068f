package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/store"
)

// Problem is an error a person or a script sees: an HTTP status and a
// message of the catalogue, with the cause kept for the log. Handlers
// return it (HandlerFunc) and Fail renders it: the one place an error
// becomes a response.
type Problem struct {
	// Status is the HTTP status.
	Status int
	// Key names the message in the catalogue (its .title and .detail);
	// Args fill the detail.
	Key  string
	Args []any
	// Sentence, when set, is the detail already worded for this case (an
	// operation's own refusal), shown instead of the catalogue's.
	Sentence string
	// Code, when set, is the JSON "error" field instead of Key: a stable
	// code for scripts (the admin API's admin.invalid_group, …).
	Code string
	// Header is added to the response (Retry-After, WWW-Authenticate, …).
	Header http.Header
	// Err is the cause: logged with the request id, never shown.
	Err error
}

// NewProblem is a Problem of status with the catalogue's message key.
func NewProblem(status int, key string, args ...any) *Problem {
	return &Problem{Status: status, Key: key, Args: args}
}

// Unavailable is the answer when moat cannot check something now (the
// store is unreachable, every hashing slot is busy): 503, try again in a
// few seconds. err is logged.
func Unavailable(err error) *Problem {
	return &Problem{Status: http.StatusServiceUnavailable, Key: "unavailable", Err: err,
		Header: http.Header{"Retry-After": {"5"}}}
}

// StoreRetryAfter is the Retry-After of answers given while the store is
// unreachable, in seconds.
const StoreRetryAfter = "10"

// StoreDown is the answer when moat's database cannot be reached: 503 with
// Retry-After, and the catalogue's message key, which says what could not
// be done and that nothing else changed. err is logged.
func StoreDown(key string, err error) *Problem {
	return &Problem{Status: http.StatusServiceUnavailable, Key: key, Err: err,
		Header: http.Header{"Retry-After": {StoreRetryAfter}}}
}

// With returns p with a response header added.
func (p *Problem) With(name, value string) *Problem {
	if p.Header == nil {
		p.Header = http.Header{}
	}
	p.Header.Set(name, value)
	return p
}

func (p *Problem) Error() string {
	msg := fmt.Sprintf("%d %s", p.Status, p.Key)
	if p.Sentence != "" {
		msg += ": " + p.Sentence
	}
	if p.Err != nil {
		msg += ": " + p.Err.Error()
	}
	return msg
}

func (p *Problem) Unwrap() error { return p.Err }

// HandlerFunc is a handler that may fail: an error it returns is written
// by Fail.
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// ServeHTTP calls f and writes its error, if any.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		Fail(w, r, err)
	}
}

// APIHandlerFunc is HandlerFunc for a JSON API: its errors are always
// written as JSON, even to a page navigation.
type APIHandlerFunc func(http.ResponseWriter, *http.Request) error

// ServeHTTP calls f and writes its error, if any, as JSON.
func (f APIHandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		write(w, r, problemOf(r, err), true)
	}
}

// Fail writes err as the response: a *Problem as its page (a person's page
// navigation) or JSON (anything else); any other error as 503 (moat could
// not do what was asked now: fail soft), which says so when the store was
// unreachable (store.ErrUnavailable). Both carry the request id that
// the log line, written for every error with a cause, carries too.
func Fail(w http.ResponseWriter, r *http.Request, err error) {
	write(w, r, problemOf(r, err), false)
}

// problemOf finds the Problem in err, logging its cause.
func problemOf(r *http.Request, err error) *Problem {
	var p *Problem
	switch {
	case errors.As(err, &p):
	case errors.Is(err, store.ErrUnavailable):
		p = StoreDown("store_unavailable", err)
	default:
		p = Unavailable(err)
	}
	if p.Err != nil || p.Status >= 500 {
		level := slog.LevelWarn
		if p.Status >= 500 {
			level = slog.LevelError
		}
		slog.Default().LogAttrs(context.WithoutCancel(r.Context()), level, "request failed",
			slog.String("request_id", request.From(r).ID), slog.Int("status", p.Status), slog.String("reason", p.Key), slog.Any("err", p.Err))
	}
	return p
}

// Error answers with moat's error page for status: HTML for a person's page
// navigation, JSON for scripts and fetch/XHR calls. key names the message in
// the catalogue ("not_found", "bad_gateway", …); args fill its detail.
func Error(w http.ResponseWriter, r *http.Request, status int, key string, args ...any) {
	write(w, r, &Problem{Status: status, Key: key, Args: args}, false)
}

// write renders p: the one writer of moat's error answers.
func write(w http.ResponseWriter, r *http.Request, p *Problem, asJSON bool) {
	for k, vs := range p.Header {
		w.Header()[k] = vs
	}
	lang := Lang(r)
	heading := T(lang, p.Key+".title")
	detail := p.Sentence
	if detail == "" {
		detail = T(lang, p.Key+".detail", p.Args...)
	}
	if asJSON || !WantsHTML(r) {
		code, message := p.Code, heading+": "+detail
		if code == "" {
			code = p.Key
		}
		if p.Sentence != "" {
			message = p.Sentence
		}
		SecurityHeaders(w.Header())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(p.Status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": code, "message": message, "request_id": request.From(r).ID})
		return
	}
	Render(w, r, p.Status, "error.html", heading, ErrorData{Status: p.Status, Heading: heading, Detail: detail})
}
