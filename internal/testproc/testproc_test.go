package testproc

import (
	"bufio"
	"fmt"
	"os"
	"testing"
)

const helperEnv = "MOAT_TESTPROC_HELPER"

// The helper echoes each line in upper case after saying "ready", and
// exits with the status the line "exit N" asks for.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		fmt.Println("ready")
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			var code int
			if _, err := fmt.Sscanf(in.Text(), "exit %d", &code); err == nil {
				os.Exit(code)
			}
			fmt.Printf("%X\n", in.Text())
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestAHelperAnswersLinesAndItsExitStatusIsKept(t *testing.T) {
	h := Start(t, helperEnv+"=1")
	if got := h.Line(t); got != "ready" {
		t.Fatalf("first line %q, want ready", got)
	}
	h.Send(t, "hi")
	if got := h.Line(t); got != "6869" {
		t.Errorf("answer %q, want 6869", got)
	}
	h.Send(t, "exit 3")
	if _, ok := h.Next(); ok {
		t.Error("output after exit")
	}
	if err := h.Wait(); err == nil || err.Error() != "exit status 3" {
		t.Errorf("exit: %v, want exit status 3", err)
	}
}

func TestAHelperStopsWhenTheTestEnds(t *testing.T) {
	var h *Helper
	t.Run("starts", func(t *testing.T) {
		h = Start(t, helperEnv+"=1")
		h.Line(t)
	})
	if err := h.Wait(); err != nil {
		t.Errorf("the helper whose stdin closed: %v, want a clean exit", err)
	}
}
