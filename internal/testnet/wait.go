package testnet

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/moat-dev/moat/internal/testwait"
)

// WaitListening waits until something accepts TCP connections on addr,
// for at most limit. It gives up early when exited is closed: the process
// that was to listen has ended (a nil channel is never closed).
func WaitListening(addr string, limit time.Duration, exited <-chan struct{}) error {
	var last error
	return wait(addr, limit, exited, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			last = err
			return false
		}
		c.Close()
		return true
	}, func() error { return fmt.Errorf("%s is not listening after %s: %v", addr, limit, last) })
}

// WaitOK polls url with c until it answers 200 OK, for at most limit; a
// nil c is a plain client that gives each try two seconds. Like
// WaitListening it gives up early when exited is closed.
func WaitOK(c *http.Client, url string, limit time.Duration, exited <-chan struct{}) error {
	if c == nil {
		c = &http.Client{Timeout: 2 * time.Second}
	}
	var last error
	return wait(url, limit, exited, func() bool {
		resp, err := c.Get(url)
		if err != nil {
			last = err
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("status %s", resp.Status)
			return false
		}
		return true
	}, func() error { return fmt.Errorf("%s did not answer 200 within %s: %v", url, limit, last) })
}

// wait polls ok until it holds, exited is closed or limit passes; timedOut
// says why in the last case.
func wait(target string, limit time.Duration, exited <-chan struct{}, ok func() bool, timedOut func() error) error {
	gone := false
	_, held := testwait.Until(limit, func() bool {
		select {
		case <-exited:
			gone = true
			return true
		default:
		}
		return ok()
	})
	switch {
	case gone:
		return fmt.Errorf("the process exited before %s answered", target)
	case !held:
		return timedOut()
	}
	return nil
}
