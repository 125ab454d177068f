package waf

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	re2 "github.com/wasilibs/go-re2"
	"rsc.io/binaryregexp"
)

// moat replaces Coraza's @rx operator (issue 13): on a browser-like
// request the CRS spends most of its time in Go's regexp answering "no
// match" for large alternations, which RE2's DFA answers several times
// faster. go-re2 is RE2 compiled to WebAssembly and then to Go (wasm2go),
// so the build stays pure Go.
//
// Go's regexp keeps the last word, so that what the rules decide is exactly
// what Coraza's own operator decides: RE2 only answers "no match" for
// valid UTF-8 input. A possible match, a rule that captures (TX.0…TX.9), and
// input that is not valid UTF-8 (where RE2 would stop reading at the first
// bad byte, and an attacker could put one before the payload) all go to Go's
// regexp, as does every pattern until its RE2 twin is compiled in the
// background. Twins are made only for patterns in use (re2After
// evaluations), so that start-up pays only for Go's compiler (RE2's costs
// as much again) and a rule that never runs costs no RE2 memory.
func init() {
	plugins.RegisterOperator("rx", newRX)
}

// rxPattern is one compiled pattern, shared by every rule and firewall
// that uses it (through Coraza's memoizer).
type rxPattern struct {
	expr string
	std  *regexp.Regexp
	// uses counts evaluations on Go's regexp until the twin is asked for.
	uses atomic.Int32
	// fast is RE2's compilation of the same pattern, nil until the
	// background compiler has done it, or for good when RE2 refuses it.
	fast atomic.Pointer[re2.Regexp]
}

type rxOperator struct{ p *rxPattern }

func newRX(o plugintypes.OperatorOptions) (plugintypes.Operator, error) {
	// Coraza's default: dotall, and multiline unless built with
	// coraza.rule.no_regex_multiline (moat is not).
	expr := "(?sm)" + o.Arguments
	if matchesArbitraryBytes(expr) {
		// As Coraza does: a pattern that matches bytes that are not
		// UTF-8 runs on a byte-wise engine. Not RE2.
		return newBinaryRX(o)
	}
	compile := func() (any, error) {
		std, err := regexp.Compile(expr)
		if err != nil {
			return nil, err
		}
		p := &rxPattern{expr: expr, std: std}
		if re2After == 0 {
			re2Queue.add(p)
		}
		return p, nil
	}
	var v any
	var err error
	if o.Memoizer != nil {
		v, err = o.Memoizer.Do("moat-rx:"+expr, compile)
	} else {
		v, err = compile()
	}
	if err != nil {
		return nil, fmt.Errorf("rx: %w", err)
	}
	return rxOperator{p: v.(*rxPattern)}, nil
}

// Evaluate reports whether value matches, capturing groups 0–8 when the
// rule captures, exactly as Coraza's own @rx does.
func (o rxOperator) Evaluate(tx plugintypes.TransactionState, value string) bool {
	if fast := o.p.fast.Load(); fast == nil {
		if o.p.uses.Add(1) == re2After {
			re2Queue.add(o.p)
		}
	} else if utf8.ValidString(value) && !fast.MatchString(value) {
		return false
	}
	if !tx.Capturing() {
		return o.p.std.MatchString(value)
	}
	m := o.p.std.FindStringSubmatchIndex(value)
	if m == nil {
		return false
	}
	for i := 0; i < len(m)/2 && i < 9; i++ {
		if m[2*i] >= 0 {
			tx.CaptureField(i, value[m[2*i]:m[2*i+1]])
		} else {
			tx.CaptureField(i, "")
		}
	}
	return true
}

// re2Compiler compiles RE2 twins one after the other in one background
// goroutine, started on the first pattern.
type re2Compiler struct {
	mu      sync.Mutex
	queue   []*rxPattern
	running bool
	// pending counts queued patterns not compiled yet.
	pending sync.WaitGroup
}

// re2After is how many evaluations on Go's regexp a pattern gets before its
// RE2 twin is compiled; 0 compiles every twin at once (the tests do, so
// that every case runs on the fast path).
var re2After int32 = 16

var re2Queue re2Compiler

func (c *re2Compiler) add(p *rxPattern) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queue = append(c.queue, p)
	c.pending.Add(1)
	if !c.running {
		c.running = true
		go c.run()
	}
}

func (c *re2Compiler) run() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		p := c.queue[0]
		c.queue = c.queue[1:]
		c.mu.Unlock()
		// A pattern RE2 refuses simply stays on Go's regexp.
		if fast, err := re2.Compile(p.expr); err == nil {
			p.fast.Store(fast)
		}
		c.pending.Done()
	}
}

// binaryRX is Coraza's operator for patterns that match arbitrary bytes.
type binaryRX struct{ re *binaryregexp.Regexp }

func newBinaryRX(o plugintypes.OperatorOptions) (plugintypes.Operator, error) {
	re, err := binaryregexp.Compile(o.Arguments)
	if err != nil {
		return nil, fmt.Errorf("rx: %w", err)
	}
	return binaryRX{re: re}, nil
}

func (o binaryRX) Evaluate(tx plugintypes.TransactionState, value string) bool {
	if !tx.Capturing() {
		return o.re.MatchString(value)
	}
	match := o.re.FindStringSubmatch(value)
	if len(match) == 0 {
		return false
	}
	for i, c := range match {
		if i == 9 {
			break
		}
		tx.CaptureField(i, c)
	}
	return true
}

// matchesArbitraryBytes reports whether expr's \xNN escapes spell bytes
// that are not valid UTF-8 (Coraza's test, kept identical).
func matchesArbitraryBytes(expr string) bool {
	decoded := make([]byte, 0, len(expr))
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		if c != '\\' {
			decoded = append(decoded, c)
			continue
		}
		if i+3 >= len(expr) {
			decoded = append(decoded, expr[i:]...)
			break
		}
		if expr[i+1] != 'x' {
			decoded = append(decoded, expr[i])
			continue
		}
		sub := expr[i:]
		advance := 3
		if len(sub) >= 6 && sub[2] == '{' {
			if end := strings.IndexByte(sub, '}'); end != -1 {
				sub = `\x` + sub[3:end]
				advance = end
			}
		}
		v, mb, _, err := strconv.UnquoteChar(sub, 0)
		if err != nil || mb {
			decoded = append(decoded, expr[i])
			continue
		}
		decoded = append(decoded, byte(v))
		i += advance
	}
	return !utf8.Valid(decoded)
}
