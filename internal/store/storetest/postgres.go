// Package storetest gives tests a real PostgreSQL and the conformance suite
// every store engine passes.
//
// Postgres(t) returns the DSN of a fresh, empty database. With
// MOAT_TEST_POSTGRES set (a DSN of a server whose user may create
// databases) it creates the database there; otherwise it starts one
// throwaway server per test binary from the PostgreSQL binaries on this
// machine (Debian's postgresql package), in a temporary directory, on
// 127.0.0.1 and a free port.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testtool"
)

// EnvPostgres names the environment variable with an external server's DSN.
const EnvPostgres = "MOAT_TEST_POSTGRES"

var server struct {
	once     sync.Once
	adminDSN string // DSN of the maintenance database
	err      error
	srv      *Server // nil with MOAT_TEST_POSTGRES
	mu       sync.Mutex
}

// Postgres returns the DSN of a new empty database, dropped when the test
// ends. Without a PostgreSQL it skips the test, or fails it when CI=true.
func Postgres(t testing.TB) string {
	t.Helper()
	server.once.Do(func() {
		if dsn := os.Getenv(EnvPostgres); dsn != "" {
			server.adminDSN = dsn
			return
		}
		srv, err := startServer()
		if err != nil {
			server.err = err
			return
		}
		server.mu.Lock()
		server.srv, server.adminDSN = srv, srv.adminDSN()
		server.mu.Unlock()
	})
	if server.err != nil {
		testtool.Missing(t, "no PostgreSQL: %v (apt-get install -y postgresql, or set %s)", server.err, EnvPostgres)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server.adminDSN)
	if err != nil {
		t.Fatalf("connect to test postgres: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "moat_test_" + hex.EncodeToString(b[:])
	// FILE_COPY (PostgreSQL 15+) copies the template's files instead of
	// writing them through the WAL: several times faster for a test.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" STRATEGY = FILE_COPY"); err != nil {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatalf("create test database: %v", err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, server.adminDSN)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(server.adminDSN)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Stop stops the server Postgres started, if any, and removes its files.
// Call it from TestMain after m.Run (see Main); without it the server is
// killed when the test binary exits, leaving its temporary directory.
func Stop() {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.srv != nil {
		server.srv.remove()
		server.srv = nil
	}
}

// Main runs the tests and then stops the shared server: use it as
// func TestMain(m *testing.M) { storetest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// binDir finds the directory holding initdb and postgres.
func binDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return pgMajor(matches[i]) > pgMajor(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	return "", errors.New("initdb not found under /usr/lib/postgresql/*/bin nor on PATH")
}

func pgMajor(path string) int {
	parts := strings.Split(path, string(filepath.Separator))
	for i, p := range parts {
		if p == "postgresql" && i+1 < len(parts) {
			n, _ := strconv.Atoi(parts[i+1])
			return n
		}
	}
	return 0
}

// Server is a PostgreSQL server run from this machine's binaries in a
// temporary directory, on 127.0.0.1 and a port of its own.
type Server struct {
	bin, dir, data string
	port           int
	cred           *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// NewServer starts a PostgreSQL server for this test alone, which the test
// may stop and start again (same port, same data) to see how moat rides
// out an outage; it is removed when the test ends. Without PostgreSQL
// binaries it skips the test, or fails it when CI=true.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := startServer()
	if err != nil {
		testtool.Missing(t, "no PostgreSQL: %v (apt-get install -y postgresql)", err)
	}
	t.Cleanup(s.remove)
	return s
}

// DSN returns the connection string of the server's maintenance database
// ("postgres"): tests that need no schema use it as it is.
func (s *Server) DSN() string { return s.adminDSN() }

func (s *Server) adminDSN() string {
	return fmt.Sprintf("postgres://moat@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Stop shuts the server down the way an operator's restart does (a fast
// shutdown: open sessions end with SQLSTATE 57P01) and waits until it has
// exited.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGINT)
}

// Crash ends the server the way a crash does (an immediate shutdown, no
// checkpoint: connections drop, and the next start recovers from the WAL).
func (s *Server) Crash(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGQUIT)
}

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		t.Fatal("postgres is not running")
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Fatalf("postgres did not exit within 30s of %v", sig)
	}
	s.cmd = nil
}

// Start starts the stopped server again on its port, and returns once it
// accepts connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatal("postgres is already running")
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// start runs postgres on s.port and waits until it accepts connections;
// the caller holds s.mu or owns s alone.
func (s *Server) start() error {
	logPath := filepath.Join(s.dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data,
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: if the test binary dies, so does its server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := waitReady(s.adminDSN(), exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("postgres did not start: %w: %s", err, lastLines(log))
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

// remove stops the server (fast shutdown) and deletes its files.
func (s *Server) remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		s.cmd = nil
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
		s.dir = ""
	}
}

// startServer runs initdb and postgres in a temporary directory. PostgreSQL
// refuses to run as root, so as root both run as the postgres user.
func startServer() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	base := ""
	if os.Geteuid() == 0 {
		// The server runs as postgres, which must reach its directory:
		// $TMPDIR may be under root's home, /tmp never is.
		base = "/tmp"
	}
	removeStale(base)
	dir, err := os.MkdirTemp(base, "moat-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, data: filepath.Join(dir, "data")}
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(pu.Uid)
		gid, _ := strconv.Atoi(pu.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "moat", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, lastLines(out))
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if s.port, err = testnet.Port(); err != nil {
			lastErr = err
			continue
		}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func waitReady(dsn string, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("the server exited")
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastLines(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// removeStale deletes the directories of servers whose test binary died
// without Stop (their postgres died with it, by Pdeathsig).
func removeStale(base string) {
	if base == "" {
		base = os.TempDir()
	}
	dirs, _ := filepath.Glob(filepath.Join(base, "moat-pg-*"))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || time.Since(fi.ModTime()) < 10*time.Minute {
			continue // maybe another test binary's server, starting
		}
		pidFile, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid"))
		if err == nil {
			first, _, _ := strings.Cut(string(pidFile), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && syscall.Kill(pid, 0) == nil {
				continue // still running
			}
		}
		_ = os.RemoveAll(d)
	}
}
