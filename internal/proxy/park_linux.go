//go:build linux

package proxy

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller holds the idle directions of WebSockets without a goroutine each:
// a parked direction's pump has exited, and its connection's descriptor
// waits in one epoll set for the whole process (level-triggered, one-shot)
// until it becomes readable; then wake starts a new pump.
//
// Why moat's own epoll set: Go's network poller parks one goroutine per
// blocked read, and each goroutine holds at least a 2 KiB stack. Two per
// socket made stacks the largest part of an idle socket's memory (4 KiB of
// the 10 measured, issue 13), more than HAProxy holds for a whole socket.
// The descriptor stays registered with Go's poller too, which reads and
// writes it as before: this set only tells when to read again.
type poller struct {
	once sync.Once
	epfd int
	err  error

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]func()
	broken  bool // epoll_wait failed: nothing parks any more
}

// errNotParkable: the connection has no descriptor to wait on (TLS, a
// wrapper with a buffer of its own), or the poller could not start.
var errNotParkable = errors.New("connection cannot be parked")

func (p *poller) start() error {
	p.once.Do(func() {
		p.epfd, p.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if p.err != nil {
			return
		}
		go p.run()
	})
	return p.err
}

// park arranges for wake to run, once, when rc becomes readable or its
// peer hangs up, and returns a token for cancel; an error means rc is not
// parked and the caller must keep reading.
func (p *poller) park(rc syscall.RawConn, wake func()) (uint64, error) {
	if err := p.start(); err != nil {
		return 0, errNotParkable
	}
	p.mu.Lock()
	if p.broken {
		p.mu.Unlock()
		return 0, errNotParkable
	}
	if p.waiting == nil {
		p.waiting = make(map[uint64]func())
	}
	p.next++
	id := p.next
	p.waiting[id] = wake
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var opErr error
	// Inside Control the descriptor cannot be closed and its number
	// reused: the set only ever holds this connection's.
	err := rc.Control(func(fd uintptr) {
		// A descriptor parked before is still in the set, disarmed by
		// its one shot: re-arm it.
		opErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		if errors.Is(opErr, unix.ENOENT) {
			opErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		p.cancel(id)
		return 0, err
	}
	return id, nil
}

// cancel forgets a parked direction (its socket is torn down; closing the
// descriptor takes it out of the set).
func (p *poller) cancel(id uint64) {
	p.mu.Lock()
	delete(p.waiting, id)
	p.mu.Unlock()
}

// parked returns how many directions wait in the set.
func (p *poller) parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiting)
}

func (p *poller) run() {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// Unreachable with a valid set. Wake every parked direction
			// (each goes back to a blocking read) and park no more,
			// rather than leave sockets that never wake.
			p.mu.Lock()
			p.broken = true
			all := p.waiting
			p.waiting = map[uint64]func(){}
			p.mu.Unlock()
			for _, wake := range all {
				wake()
			}
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			wake := p.waiting[id]
			delete(p.waiting, id)
			p.mu.Unlock()
			if wake != nil {
				wake()
			}
		}
	}
}
