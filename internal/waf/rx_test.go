package waf

import (
	"os"
	"testing"

	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	re2 "github.com/wasilibs/go-re2"
)

// TestMain makes every RE2 twin at once, so that the tests (the CRS
// regression suite among them) and benchmarks run on the fast path.
func TestMain(m *testing.M) {
	re2After = 0
	os.Exit(m.Run())
}

// captureState is the part of Coraza's transaction an operator sees.
type captureState struct {
	plugintypes.TransactionState
	capturing bool
	fields    map[int]string
}

func (c *captureState) Capturing() bool { return c.capturing }
func (c *captureState) CaptureField(i int, v string) {
	if c.fields == nil {
		c.fields = map[int]string{}
	}
	c.fields[i] = v
}

func rxFor(t *testing.T, pattern string) plugintypes.Operator {
	t.Helper()
	op, err := newRX(plugintypes.OperatorOptions{Arguments: pattern})
	if err != nil {
		t.Fatal(err)
	}
	re2Queue.pending.Wait()
	if rx, ok := op.(rxOperator); ok && rx.p.fast.Load() == nil {
		t.Fatalf("%s: no RE2 twin", pattern)
	}
	return op
}

// RE2 stops reading at the first byte that is not UTF-8; Go's regexp reads
// it as U+FFFD and goes on, so RE2 misses "union\xff select" where Go
// matches; a payload around such a byte must still match.
func TestAnInvalidUTF8ByteCannotHideAPayloadFromTheRE2FastPath(t *testing.T) {
	const pattern, value = `(?i)union.*select`, "union\xff select"
	if re2.MustCompile("(?sm)" + pattern).MatchString(value) {
		t.Fatal("premise: RE2 alone now matches past an invalid byte; the guard may be unnecessary")
	}
	if !rxFor(t, pattern).Evaluate(&captureState{}, value) {
		t.Error("the payload behind an invalid UTF-8 byte was not matched")
	}
}

func TestRXMatchesAndCapturesAsCorazasOwn(t *testing.T) {
	op := rxFor(t, `^/api/v(\d+)/(x)?`)
	tx := &captureState{capturing: true}
	if !op.Evaluate(tx, "/api/v12/") {
		t.Fatal("no match")
	}
	if tx.fields[0] != "/api/v12/" || tx.fields[1] != "12" || tx.fields[2] != "" {
		t.Errorf("captures %v", tx.fields)
	}
	if op.Evaluate(&captureState{}, "/web/v1/") {
		t.Error("matched a value it should not")
	}
	// (?sm) as Coraza: ^ after a newline, . across one.
	if !rxFor(t, `^b.c`).Evaluate(&captureState{}, "a\nb\nc") {
		t.Error("multiline/dotall flags lost")
	}
}

func TestAPatternOfRawBytesRunsOnTheByteEngine(t *testing.T) {
	op := rxFor(t, `\xff\xfe`)
	if _, ok := op.(binaryRX); !ok {
		t.Fatalf("operator %T, want binaryRX", op)
	}
	if !op.Evaluate(&captureState{}, "a\xff\xfeb") {
		t.Error("raw bytes not matched")
	}
}

func TestOnlyAPatternInUseGetsItsRE2Twin(t *testing.T) {
	re2After = 3
	t.Cleanup(func() { re2After = 0 })
	op, err := newRX(plugintypes.OperatorOptions{Arguments: `only-in-this-test-\d+`})
	if err != nil {
		t.Fatal(err)
	}
	p := op.(rxOperator).p
	for i := 1; i <= 3; i++ {
		re2Queue.pending.Wait()
		if p.fast.Load() != nil {
			t.Fatalf("twin compiled after %d evaluations, want after 3", i-1)
		}
		if !op.Evaluate(&captureState{}, "only-in-this-test-42") {
			t.Fatal("no match on Go's regexp")
		}
	}
	re2Queue.pending.Wait()
	if p.fast.Load() == nil {
		t.Fatal("no twin after 3 evaluations")
	}
	if !op.Evaluate(&captureState{}, "only-in-this-test-42") || op.Evaluate(&captureState{}, "other") {
		t.Error("the twin changed a verdict")
	}
}
