// Package redistest starts a real, throw-away redis-server for tests.
package redistest

import (
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testtool"
)

// Start runs redis-server on a free loopback port with persistence off and
// returns its redis:// URL; the server is stopped when the test ends. When
// redis-server is not installed the test is skipped, or fails under CI=true.
func Start(t testing.TB) string {
	t.Helper()
	return NewServer(t).URL()
}

// Server is a redis-server of one test's own, which the test may stop and
// start again on the same port (with empty data: persistence is off) to
// see how moat rides out an outage.
type Server struct {
	bin, dir string
	port     int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// NewServer starts a redis-server on a free loopback port; it is stopped
// when the test ends. When redis-server is not installed the test is
// skipped, or fails under CI=true.
func NewServer(t testing.TB) *Server {
	t.Helper()
	bin := testtool.Find(t, "apt-get install -y redis-server", "redis-server")
	s := &Server{bin: bin, dir: t.TempDir(), port: testnet.FreePort(t)}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.kill()
	})
	s.Start(t)
	return s
}

// URL is the server's redis:// URL (database 0).
func (s *Server) URL() string { return "redis://" + s.addr() + "/0" }

func (s *Server) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Start starts the server (again) and returns once it accepts connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatal("redis-server is already running")
	}
	cmd := exec.Command(s.bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(s.port),
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	if err := testnet.WaitListening(s.addr(), 5*time.Second, nil); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
}

// Stop kills the server (SIGKILL, as a crash or an OOM kill would) and
// waits until it has exited: every client connection drops at once.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		t.Fatal("redis-server is not running")
	}
	s.kill()
}

func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
