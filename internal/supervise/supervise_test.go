package supervise

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testwait"
)

// The test binary doubles as the supervised app: with SUPERVISE_TEST_APP
// set it runs as one of these instead of the tests.
//
//	listen    serves 200 on PORT, writes "pid" to GET /pid; SIGUSR1 is
//	          appended to SIGNAL_FILE; SIGTERM exits 0
//	stubborn  like listen, but ignores SIGTERM
//	crash     exits 3 at once
func TestMain(m *testing.M) {
	switch os.Getenv("SUPERVISE_TEST_APP") {
	case "":
		os.Exit(m.Run())
	case "crash":
		os.Exit(3)
	case "listen", "stubborn":
		testApp(os.Getenv("SUPERVISE_TEST_APP") == "stubborn")
	}
}

func testApp(stubborn bool) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR1)
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test app:", err)
		os.Exit(1)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getpid())
	}))
	for sig := range sigs {
		switch {
		case sig == syscall.SIGUSR1:
			f, _ := os.OpenFile(os.Getenv("SIGNAL_FILE"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			fmt.Fprintln(f, "SIGUSR1")
			f.Close()
		case !stubborn:
			os.Exit(0)
		}
	}
}

// testProcess returns a Process running the test app in the given mode on
// a free port; it is stopped when the test ends.
func testProcess(t *testing.T, mode string) (*Process, *testlog.Buffer) {
	t.Helper()
	port := testnet.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logs := &testlog.Buffer{}
	p := &Process{
		Spec: Spec{Name: "app", Argv: []string{os.Args[0]}, Addr: addr, HealthURL: "http://" + addr + "/",
			Env: []string{"SUPERVISE_TEST_APP=" + mode, "PORT=" + strconv.Itoa(port), "SIGNAL_FILE=" + filepath.Join(t.TempDir(), "signals")}},
		Log:        slog.New(slog.NewJSONHandler(logs, nil)),
		Stdout:     io.Discard,
		Stderr:     io.Discard,
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		StopGrace:  2 * time.Second,
	}
	t.Cleanup(p.Stop)
	return p, logs
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// servedBy asks the app which process answers.
func servedBy(addr string) int {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pid, _ := strconv.Atoi(string(b))
	return pid
}

func TestAKilledAppIsStartedAgainAndAnswers(t *testing.T) {
	p, logs := testProcess(t, "listen")
	p.Start()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	first := p.PID()
	if got := servedBy(p.Spec.Addr); got != first {
		t.Fatalf("the app at %s is pid %d, want the supervised %d", p.Spec.Addr, got, first)
	}
	if pgid, _ := syscall.Getpgid(first); pgid != first {
		t.Errorf("the app runs in process group %d, want its own (%d), so a terminal's Ctrl-C reaches moat only", pgid, first)
	}

	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var second int
	testwait.For(t, 20*time.Second, "a new process answers", func() bool {
		second = servedBy(p.Spec.Addr)
		return second != 0 && second != first
	})
	if second != p.PID() || p.Restarts() != 1 {
		t.Errorf("served by %d, supervised pid %d, restarts %d; want the restarted process, 1 restart", second, p.PID(), p.Restarts())
	}
	if !strings.Contains(logs.String(), `"exit":"signal: killed"`) {
		t.Errorf("the log does not say how the app ended:\n%s", logs)
	}

	p.Stop()
	if alive(second) {
		t.Errorf("pid %d still runs after Stop", second)
	}
	if p.Restarts() != 1 {
		t.Errorf("Stop led to a restart: restarts = %d", p.Restarts())
	}
}

func TestACrashingAppBacksOffUpToTheBound(t *testing.T) {
	p, logs := testProcess(t, "crash")
	p.Start()
	testwait.For(t, 20*time.Second, "five restarts", func() bool { return p.Restarts() >= 5 })
	p.Stop()
	var delays []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if _, rest, ok := strings.Cut(line, `"restart_in":"`); ok {
			delays = append(delays, rest[:strings.IndexByte(rest, '"')])
		}
	}
	want := []string{"50ms", "100ms", "200ms", "200ms", "200ms"}
	if len(delays) < len(want) || strings.Join(delays[:len(want)], " ") != strings.Join(want, " ") {
		t.Errorf("restart delays %v, want %v then 200ms", delays, want)
	}
	if !strings.Contains(logs.String(), `"exit":"status 3"`) {
		t.Errorf("the log does not give the exit status:\n%s", logs)
	}
}

func TestNextBackoffDoublesAndStopsAtTheBound(t *testing.T) {
	for _, tc := range []struct{ d, max, want time.Duration }{
		{time.Second, 30 * time.Second, 2 * time.Second},
		{10 * time.Second, 30 * time.Second, 20 * time.Second},
		{20 * time.Second, 30 * time.Second, 30 * time.Second},
		{30 * time.Second, 30 * time.Second, 30 * time.Second},
	} {
		if got := NextBackoff(tc.d, tc.max); got != tc.want {
			t.Errorf("NextBackoff(%s, %s) = %s, want %s", tc.d, tc.max, got, tc.want)
		}
	}
}

func TestStopKillsAnAppThatIgnoresSIGTERM(t *testing.T) {
	p, logs := testProcess(t, "stubborn")
	p.StopGrace = 300 * time.Millisecond
	p.Start()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	p.Stop()
	if alive(pid) {
		t.Errorf("pid %d survived Stop", pid)
	}
	if !strings.Contains(logs.String(), "did not stop within the grace period; killing it") {
		t.Errorf("the log does not say the app was killed:\n%s", logs)
	}
}

func TestSignalReachesTheApp(t *testing.T) {
	p, _ := testProcess(t, "listen")
	p.Start()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	file := strings.TrimPrefix(p.Spec.Env[2], "SIGNAL_FILE=")
	testwait.For(t, 10*time.Second, "the app records SIGUSR1", func() bool {
		b, _ := os.ReadFile(file)
		return string(b) == "SIGUSR1\n"
	})
}

func TestACommandThatCannotStartIsLoggedAndRetried(t *testing.T) {
	p, logs := testProcess(t, "listen")
	p.Spec.Argv = []string{filepath.Join(t.TempDir(), "no-such-app")}
	p.Start()
	testwait.For(t, 10*time.Second, "two attempts", func() bool { return p.Restarts() >= 2 })
	p.Stop()
	if !strings.Contains(logs.String(), `"msg":"could not start the app"`) || !strings.Contains(logs.String(), "no such file or directory") {
		t.Errorf("the log does not say why the app did not start:\n%s", logs)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := p.WaitReady(ctx); err == nil || !strings.Contains(err.Error(), "did not answer on") {
		t.Errorf("WaitReady = %v, want it to say the app never answered", err)
	}
}

func TestStopIsSafeBeforeStartAndTwice(t *testing.T) {
	p, _ := testProcess(t, "crash")
	p.Stop()
	p.Start()
	p.Stop()
	p.Stop()
}
