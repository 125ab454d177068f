package attempts_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/attempts"
	"github.com/moat-dev/moat/internal/ratelimit/redistest"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testproc"
)

// The helper process: this test binary run again with helperEnv set. It
// opens the counter as moat would (attempts.Open with counters: and store:;
// "memory" for a counter of its own),
// says "ready", waits for "go" on stdin, then spends a budget on one key
// from several goroutines at once: each attempt is counted first and
// allowed only while its rank is within the budget. It prints the ranks it
// was allowed and exits.
const (
	helperEnv  = "MOAT_ATTEMPTS_HELPER"
	helperWork = 4 // goroutines per process
)

// helper runs the helper process described by spec (counters URL, store
// DSN, key and budget, separated by spaces) and returns its exit code.
func helper(spec string) int {
	f := strings.Split(spec, " ")
	if len(f) != 4 {
		fmt.Fprintln(os.Stderr, "helper: bad spec", spec)
		return 2
	}
	if err := runHelper(f[0], f[1], f[2], f[3]); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	return 0
}

func runHelper(counters, dsn, key, budgetArg string) error {
	if counters == "-" {
		counters = ""
	}
	budget, err := strconv.ParseInt(budgetArg, 10, 64)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	var c attempts.Counter = attempts.NewMemory(0)
	if counters != "memory" {
		if c, err = attempts.Open(counters, st); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	if line, _ := bufio.NewReader(os.Stdin).ReadString('\n'); strings.TrimSpace(line) != "go" {
		return fmt.Errorf("expected go, got %q", line)
	}
	var mu sync.Mutex
	var allowed []int64
	var firstErr error
	var wg sync.WaitGroup
	for range helperWork {
		wg.Go(func() {
			for {
				s, err := c.Fail(ctx, key, time.Hour)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err != nil || s.Count > budget {
					mu.Unlock()
					return
				}
				allowed = append(allowed, s.Count)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	out := make([]string, len(allowed))
	for i, n := range allowed {
		out[i] = strconv.FormatInt(n, 10)
	}
	fmt.Println("allowed", strings.Join(out, " "))
	return nil
}

// TestBudgetIsExactAcrossProcesses: three moat-like processes, each with
// several goroutines, spend one key's budget at once through Redis,
// through PostgreSQL and through one SQLite file. Together they are
// allowed exactly the budget, each rank once: the budget of one instance
// is the budget of three.
func TestBudgetIsExactAcrossProcesses(t *testing.T) {
	const budget, processes = 50, 3
	sqlitePath := filepath.Join(t.TempDir(), "moat.db")
	for name, backend := range map[string]struct{ counters, dsn string }{
		"redis":    {redistest.Start(t), filepath.Join(t.TempDir(), "unused.db")},
		"postgres": {"-", storetest.Postgres(t)},
		"sqlite":   {"-", sqlitePath},
	} {
		t.Run(name, func(t *testing.T) {
			// Migrate once before the processes race to open the store.
			openStore(t, backend.dsn)
			spec := strings.Join([]string{backend.counters, backend.dsn, "ac:alice@example.com|192.0.2.1", strconv.Itoa(budget)}, " ")
			var procs []*helperProc
			for range processes {
				procs = append(procs, startHelper(t, spec))
			}
			for _, p := range procs {
				p.Send(t, "go")
			}
			var all []int64
			for i, p := range procs {
				ranks := p.allowed(t)
				t.Logf("process %d was allowed %d attempts", i, len(ranks))
				all = append(all, ranks...)
			}
			slices.Sort(all)
			want := make([]int64, budget)
			for i := range want {
				want[i] = int64(i + 1)
			}
			if !slices.Equal(all, want) {
				t.Errorf("%d processes were allowed %d attempts with ranks %v; want exactly 1…%d once each", processes, len(all), all, budget)
			}
		})
	}
	// The same run with a counter per process, as moat had: each process
	// spends a budget of its own. This is what the test catches.
	t.Run("memory, for contrast", func(t *testing.T) {
		spec := strings.Join([]string{"memory", sqlitePath, "ac:alice@example.com|192.0.2.1", strconv.Itoa(budget)}, " ")
		var procs []*helperProc
		for range processes {
			procs = append(procs, startHelper(t, spec))
		}
		total := 0
		for _, p := range procs {
			p.Send(t, "go")
		}
		for _, p := range procs {
			total += len(p.allowed(t))
		}
		if total != processes*budget {
			t.Errorf("per-process counters allowed %d attempts, want %d", total, processes*budget)
		}
	})
}

// helperProc is a helper process spending a budget.
type helperProc struct{ *testproc.Helper }

func startHelper(t *testing.T, spec string) *helperProc {
	t.Helper()
	p := &helperProc{testproc.Start(t, helperEnv+"="+spec)}
	if line := p.Line(t); line != "ready" {
		t.Fatalf("helper said %q, want ready", line)
	}
	return p
}

func (p *helperProc) allowed(t *testing.T) []int64 {
	t.Helper()
	f := strings.Fields(p.Line(t))
	if len(f) == 0 || f[0] != "allowed" {
		t.Fatalf("helper said %q", f)
	}
	var out []int64
	for _, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	return out
}
