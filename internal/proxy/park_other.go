//go:build !linux

package proxy

import (
	"errors"
	"syscall"
)

// poller parks nothing outside Linux: every direction keeps its pump.
type poller struct{}

var errNotParkable = errors.New("connection cannot be parked")

func (p *poller) park(syscall.RawConn, func()) (uint64, error) { return 0, errNotParkable }
func (p *poller) cancel(uint64)                                {}
func (p *poller) parked() int                                  { return 0 }
