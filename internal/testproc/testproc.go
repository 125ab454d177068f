// Package testproc runs the test binary again as a helper process, for
// tests that need another process: a second moat instance spending the
// same budget or receiving the same events, or peers whose memory must not
// count as the test's. The test and the helper speak in lines over the
// helper's stdin and stdout.
//
// The helper is chosen by an environment variable that the package's
// TestMain checks before running any test:
//
//	func TestMain(m *testing.M) {
//		if spec := os.Getenv(helperEnv); spec != "" {
//			os.Exit(helper(spec))
//		}
//		os.Exit(m.Run())
//	}
package testproc

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// stopGrace is how long a helper has to exit once its stdin is closed
// before it is killed.
const stopGrace = 10 * time.Second

// Helper is the test binary running as a helper process.
type Helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	// waiting starts the one cmd.Wait, which may run only once the test
	// has read what it wants: Wait closes the stdout pipe.
	waiting sync.Once
	done    chan struct{} // closed when the process has exited
	err     error         // its exit error, once done is closed
}

// Start runs the test binary again, running no test, with env ("NAME=value"
// pairs) added to its environment; its stderr is the test's. When the test
// ends the helper's stdin is closed, which tells it to finish, and it is
// killed if it has not exited stopGrace later.
func Start(t testing.TB, env ...string) *Helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a helper process: %v", err)
	}
	h := &Helper{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout), done: make(chan struct{})}
	h.out.Buffer(make([]byte, 64<<10), 1<<20)
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-h.exited():
		case <-time.After(stopGrace):
			_ = cmd.Process.Kill()
			<-h.done
		}
	})
	return h
}

// Next returns the helper's next line of output, or false once its
// output has ended. It is for a goroutine that reads everything; a test
// reading one answer calls Line.
func (h *Helper) Next() (string, bool) {
	if !h.out.Scan() {
		return "", false
	}
	return h.out.Text(), true
}

// Line returns the helper's next line of output, failing t when the
// helper's output has ended.
func (h *Helper) Line(t testing.TB) string {
	t.Helper()
	line, ok := h.Next()
	if !ok {
		t.Fatalf("the helper process ended early: %v", h.out.Err())
	}
	return line
}

// Send writes s and a newline to the helper's stdin.
func (h *Helper) Send(t testing.TB, s string) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, s+"\n"); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for the helper to exit and returns its exit error. Output
// not read by then is lost.
func (h *Helper) Wait() error {
	<-h.exited()
	return h.err
}

// exited returns a channel closed once the helper has exited.
func (h *Helper) exited() <-chan struct{} {
	h.waiting.Do(func() {
		go func() {
			h.err = h.cmd.Wait()
			close(h.done)
		}()
	})
	return h.done
}
