// Package supervise keeps an app running beside moat: it starts the
// command, restarts it with a bounded exponential backoff when it exits,
// passes signals on to it, and stops it (SIGTERM, then SIGKILL after a
// grace period) when moat stops.
//
// The command runs in a process group of its own, so a terminal's Ctrl-C
// reaches moat alone and moat decides how the app stops; and with
// Pdeathsig, so the app never outlives a moat that was killed.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of a Process's timing.
const (
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	// DefaultStableAfter is how long a run must last for the backoff to
	// start again from its minimum.
	DefaultStableAfter = time.Minute
	DefaultStopGrace   = 10 * time.Second
	// healthPoll is how often readiness is polled.
	healthPoll = 200 * time.Millisecond
)

// Spec is what to run.
type Spec struct {
	// Name names the app in logs (its backend's name).
	Name string
	// Argv is the command and its arguments; Argv[0] is looked up in PATH.
	Argv []string
	// Dir is the working directory ("" for moat's own).
	Dir string
	// Env is added to moat's environment.
	Env []string
	// Addr is the host:port the app listens on; it is ready when a TCP
	// connection succeeds there, or when HealthURL answers 200.
	Addr      string
	HealthURL string
}

// Equal reports whether a and b run the same thing, so a reload that keeps
// a backend's command keeps its process.
func (a Spec) Equal(b Spec) bool {
	return a.Name == b.Name && slices.Equal(a.Argv, b.Argv) && a.Dir == b.Dir &&
		slices.Equal(a.Env, b.Env) && a.Addr == b.Addr && a.HealthURL == b.HealthURL
}

// String shows the command for logs and messages.
func (a Spec) String() string { return strings.Join(a.Argv, " ") }

// Process keeps one command running until Stop. Set the optional fields
// before Start.
type Process struct {
	Spec Spec
	Log  *slog.Logger
	// Stdout and Stderr receive the app's output (default: moat's own).
	Stdout, Stderr io.Writer
	// MinBackoff, MaxBackoff, StableAfter and StopGrace default to the
	// Default* constants.
	MinBackoff, MaxBackoff, StableAfter, StopGrace time.Duration

	mu       sync.Mutex
	cmd      *exec.Cmd // the current run, nil between runs
	restarts int
	ready    chan struct{} // closed when the first run became ready
	stop     chan struct{} // closed by Stop
	done     chan struct{} // closed when the loop has ended
	started  bool
}

// Start begins running the command; it returns at once. A command that
// cannot start (not found, not executable) is retried like one that
// crashed, and logged each time.
func (p *Process) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return
	}
	p.started = true
	p.ready, p.stop, p.done = make(chan struct{}), make(chan struct{}), make(chan struct{})
	p.MinBackoff = orDefault(p.MinBackoff, DefaultMinBackoff)
	p.MaxBackoff = orDefault(p.MaxBackoff, DefaultMaxBackoff)
	p.StableAfter = orDefault(p.StableAfter, DefaultStableAfter)
	p.StopGrace = orDefault(p.StopGrace, DefaultStopGrace)
	if p.Log == nil {
		p.Log = slog.Default()
	}
	go p.loop()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// loop runs the command again each time it ends, until Stop.
func (p *Process) loop() {
	defer close(p.done)
	backoff := p.MinBackoff
	for {
		began := time.Now()
		exited, err := p.run()
		if err != nil {
			p.Log.Error("could not start the app", "backend", p.Spec.Name, "command", p.Spec.String(), "err", err.Error())
		}
		select {
		case <-p.stop:
			return
		default:
		}
		if time.Since(began) >= p.StableAfter {
			backoff = p.MinBackoff
		}
		if err == nil {
			p.Log.Warn("the app exited; restarting it", "backend", p.Spec.Name, "command", p.Spec.String(),
				"exit", describeExit(exited), "ran", time.Since(began).Round(time.Millisecond).String(), "restart_in", backoff.String())
		}
		select {
		case <-p.stop:
			return
		case <-time.After(backoff):
		}
		backoff = NextBackoff(backoff, p.MaxBackoff)
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

// NextBackoff doubles d, up to max.
func NextBackoff(d, max time.Duration) time.Duration {
	if d >= max/2 {
		return max
	}
	return 2 * d
}

// run starts the command once and waits for it to exit (or for Stop to
// end it). The error is for a command that did not start.
func (p *Process) run() (*os.ProcessState, error) {
	cmd := exec.Command(p.Spec.Argv[0], p.Spec.Argv[1:]...)
	cmd.Dir = p.Spec.Dir
	cmd.Env = append(os.Environ(), p.Spec.Env...)
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	// Its own process group: Ctrl-C in a terminal reaches moat only, and
	// signals to the group reach the app's own children (Streamlit's).
	// Pdeathsig: if moat dies without stopping it, the app gets SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	p.mu.Lock()
	select {
	case <-p.stop:
		p.mu.Unlock()
		return nil, nil
	default:
	}
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	p.cmd = cmd
	p.mu.Unlock()
	p.Log.Info("started the app", "backend", p.Spec.Name, "command", p.Spec.String(), "pid", cmd.Process.Pid)

	exited := make(chan struct{})
	go p.watchReady(exited)
	_ = cmd.Wait() // an exit status is not an error here; ProcessState tells it
	close(exited)
	// Whatever the app left behind in its group (a child holding the
	// port) goes with it, so the next run can listen.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return cmd.ProcessState, nil
}

func describeExit(st *os.ProcessState) string {
	if st == nil {
		return "unknown"
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal: " + ws.Signal().String()
	}
	return fmt.Sprintf("status %d", st.ExitCode())
}

// watchReady polls the app until it answers, and closes ready the first
// time it does.
func (p *Process) watchReady(exited <-chan struct{}) {
	select {
	case <-p.ready:
		return
	default:
	}
	client := &http.Client{Timeout: time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t := time.NewTicker(healthPoll)
	defer t.Stop()
	for {
		if p.answers(client) {
			p.Log.Info("the app is ready", "backend", p.Spec.Name, "addr", p.Spec.Addr)
			close(p.ready)
			return
		}
		select {
		case <-exited:
			return
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *Process) answers(client *http.Client) bool {
	if p.Spec.HealthURL != "" {
		resp, err := client.Get(p.Spec.HealthURL)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	c, err := net.DialTimeout("tcp", p.Spec.Addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// WaitReady waits until the app first answered, or ctx ends.
func (p *Process) WaitReady(ctx context.Context) error {
	select {
	case <-p.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the app of backend %s (%s) did not answer on %s: %w", p.Spec.Name, p.Spec.String(), p.Spec.Addr, ctx.Err())
	}
}

// PID is the running command's process id, or 0 between runs.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Restarts counts the runs after the first.
func (p *Process) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Signal sends sig to the app's process group, if it runs.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return errors.New("the app is not running")
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop ends the app: SIGTERM to its process group, SIGKILL after
// StopGrace, and no more restarts. It waits until the app has exited.
func (p *Process) Stop() {
	p.mu.Lock()
	if !p.started {
		p.mu.Unlock()
		return
	}
	select {
	case <-p.stop:
		p.mu.Unlock()
		<-p.done
		return
	default:
	}
	close(p.stop)
	var pid int
	if p.cmd != nil && p.cmd.Process != nil {
		pid = p.cmd.Process.Pid
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(p.StopGrace):
		if pid != 0 {
			p.Log.Warn("the app did not stop within the grace period; killing it", "backend", p.Spec.Name, "grace", p.StopGrace.String())
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		<-p.done
	}
	p.Log.Info("stopped the app", "backend", p.Spec.Name)
}
