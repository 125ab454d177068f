// Package bodylimit bounds a request body in size and in time, for every
// stage that reads one (sign-in forms, the WAF, proxied uploads).
//
// Size is bounded by http.MaxBytesReader. Time is bounded by the
// connection's read deadline (through http.ResponseController, so HTTP/1.1
// and HTTP/2 alike): a body on which no byte arrives for Limits.Stall, or
// whose average rate falls below Limits.MinRate once the first Stall has
// passed, is cut. Without it a client sending one byte every two seconds
// held a connection, and the backend's, for as long as it liked (issue 12,
// finding 4). The rate rule is Apache mod_reqtimeout's (body=20,MinRate=500);
// the stall rule is nginx's client_body_timeout.
package bodylimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// ErrTooSlow is the error (wrapped) of a body read cut by Limits.Stall or
// Limits.MinRate.
var ErrTooSlow = errors.New("request body arrived too slowly")

// Limits bound one request body. A zero field bounds nothing.
type Limits struct {
	// MaxBytes is the most bytes the body may carry.
	MaxBytes int64
	// Stall is the longest wait for the next byte, and the grace period
	// before MinRate applies.
	Stall time.Duration
	// MinRate is the lowest average rate, in bytes per second, measured
	// from the start of the request once Stall has passed.
	MinRate int64
}

// Wrap returns r with its body bounded by l, for a handler writing to w
// (the connection's read deadline is set through w). A request without a
// body is returned as it is. Err reports, from r's context, what cut the
// body.
func Wrap(w http.ResponseWriter, r *http.Request, l Limits) *http.Request {
	if r.Body == nil || r.Body == http.NoBody {
		return r
	}
	st := &state{}
	b := &body{ReadCloser: r.Body, state: st, limits: l, start: time.Now()}
	if l.MaxBytes > 0 {
		b.ReadCloser = http.MaxBytesReader(w, r.Body, l.MaxBytes)
	}
	if l.Stall > 0 {
		b.rc = http.NewResponseController(w)
	}
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	r.Body = b
	return r
}

// Err returns what cut the body of the request ctx belongs to: an error
// wrapping ErrTooSlow, an *http.MaxBytesError, or nil. Stages that see the
// body fail only indirectly (a proxy whose round trip failed, an HTTP/1.1
// request whose context the server cancelled when the deadline passed) ask
// here.
func Err(ctx context.Context) error {
	if st, ok := ctx.Value(stateKey{}).(*state); ok {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.err
	}
	return nil
}

// Status maps an error that cut a body to its answer: 413 with the message
// key "body_too_large", or 408 with "body_timeout". ok is false for any
// other error.
func Status(err error) (status int, key string, ok bool) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, "body_too_large", true
	case errors.Is(err, ErrTooSlow):
		return http.StatusRequestTimeout, "body_timeout", true
	}
	return 0, "", false
}

type stateKey struct{}

// state is where a body records what cut it; the request's context carries
// it to the stages that only see a failed round trip.
type state struct {
	mu  sync.Mutex
	err error
}

// body is a request body read under Limits.
type body struct {
	io.ReadCloser
	*state
	limits Limits
	rc     *http.ResponseController
	start  time.Time
	read   int64
	// deadline is the read deadline in force; zero when none is. It
	// stays after the body is in: net/http lifts it itself (HTTP/1.1
	// before its background read, HTTP/2 ignores it on a finished body).
	deadline time.Time
	failed   error
}

func (b *body) Read(p []byte) (int, error) {
	if b.failed != nil {
		return 0, b.failed
	}
	if b.rc != nil {
		b.arm(time.Now())
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if err == nil || err == io.EOF {
		return n, err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: %d bytes in %s (at least one byte every %s and %d bytes/s on average)",
			ErrTooSlow, b.read, time.Since(b.start).Round(time.Millisecond), b.limits.Stall, b.limits.MinRate)
	}
	if _, _, ok := Status(err); ok {
		b.failed = err
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

// arm sets the read deadline for the next read: the earlier of a stall
// timeout from now and the moment the average rate would fall below
// MinRate. A deadline only a little later than the one in force is left
// alone, which saves HTTP/2 a message to its connection per read.
func (b *body) arm(now time.Time) {
	next := now.Add(b.limits.Stall)
	if b.limits.MinRate > 0 {
		owed := time.Duration(float64(b.read) / float64(b.limits.MinRate) * float64(time.Second))
		if byRate := b.start.Add(b.limits.Stall + owed); byRate.Before(next) {
			next = byRate
		}
	}
	if !b.deadline.IsZero() && !next.Before(b.deadline) && next.Sub(b.deadline) < b.limits.Stall/8 {
		return
	}
	if err := b.rc.SetReadDeadline(next); err == nil {
		b.deadline = next
	}
}
