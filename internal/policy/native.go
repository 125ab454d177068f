package policy

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"

	"github.com/moat-dev/moat/internal/config"
)

// exprProgram is a compiled rule expression: true when the rule matches.
// An evaluation error (such as a missing header) is a non-match, as in
// Cloud Armor, and is returned for explain and logs.
type exprProgram interface {
	eval(a *activation) (bool, error)
}

// celProgram runs an expression in CEL's interpreter.
type celProgram struct{ prg cel.Program }

func (p celProgram) eval(a *activation) (bool, error) {
	out, _, err := p.prg.Eval(a)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errors.New("expression did not yield a boolean")
	}
	return b, nil
}

// Why a second evaluator: most rules test one request attribute against a
// constant (request.path.startsWith('/admin'), request.method == 'TRACE',
// request.headers['user-agent'].contains('sqlmap'), inIpRange(origin.ip,
// '192.0.2.0/24')), and CEL's interpreter spent about 300 ns on each
// (frames, attribute resolution, overload dispatch): two thirds of what ten
// rules cost a signed-in request (issue 13). nativeExpr recognises these
// shapes in the type-checked expression and evaluates them in Go with CEL's
// answers, errors included (a missing header is CEL's "no such key", hence
// no match); any other expression runs in CEL. FuzzNativeExpr holds the two
// evaluators to the same answers.

// nativeOp is the test a nativeExpr applies.
type nativeOp int

const (
	opStartsWith nativeOp = iota
	opEndsWith
	opContains
	opEqual
	opNotEqual
	opInIPRange
)

// nativeExpr is one test of a string variable (or one request header)
// against a constant.
type nativeExpr struct {
	op  nativeOp
	v   int    // the variable, an index into activation.vals
	lit string // the constant
	// header is the request.headers key when v is varHeaders; missing is
	// the error CEL gives when the request has no such header.
	header  string
	missing error
	prefix  netip.Prefix // opInIPRange
}

func (n *nativeExpr) eval(a *activation) (bool, error) {
	if n.op == opInIPRange {
		// inIPRange with origin.ip: an address that does not parse (none
		// resolved) is in no range.
		return a.ip.IsValid() && n.prefix.Contains(a.ip.Unmap()), nil
	}
	var s string
	if n.v == varHeaders {
		v, found := findHeader(a.headers.h, n.header)
		if !found {
			return false, n.missing
		}
		s = v
	} else {
		s = string(a.value(n.v).(types.String))
	}
	switch n.op {
	case opStartsWith:
		return strings.HasPrefix(s, n.lit), nil
	case opEndsWith:
		return strings.HasSuffix(s, n.lit), nil
	case opContains:
		return strings.Contains(s, n.lit), nil
	case opEqual:
		return s == n.lit, nil
	default: // opNotEqual
		return s != n.lit, nil
	}
}

// nativeOf returns the native evaluator of a checked expression, or nil
// when its shape is not one nativeExpr knows.
func nativeOf(checked *cel.Ast) *nativeExpr {
	e := checked.NativeRep().Expr()
	if e.Kind() != ast.CallKind {
		return nil
	}
	c := e.AsCall()
	args := c.Args()
	var n *nativeExpr
	switch name := c.FunctionName(); {
	case c.IsMemberFunction() && len(args) == 1 && (name == "startsWith" || name == "endsWith" || name == "contains"):
		lit, ok := stringLiteral(args[0])
		if !ok {
			return nil
		}
		n = operand(c.Target())
		if n == nil {
			return nil
		}
		n.lit = lit
		n.op = map[string]nativeOp{"startsWith": opStartsWith, "endsWith": opEndsWith, "contains": opContains}[name]
	case !c.IsMemberFunction() && len(args) == 2 && (name == "_==_" || name == "_!=_"):
		x, y := args[0], args[1]
		if _, ok := stringLiteral(x); ok {
			x, y = y, x
		}
		lit, ok := stringLiteral(y)
		if !ok {
			return nil
		}
		n = operand(x)
		if n == nil {
			return nil
		}
		n.lit, n.op = lit, opEqual
		if name == "_!=_" {
			n.op = opNotEqual
		}
	case !c.IsMemberFunction() && len(args) == 2 && name == "inIpRange":
		lit, ok := stringLiteral(args[1])
		if !ok || args[0].Kind() != ast.IdentKind || args[0].AsIdent() != "origin.ip" {
			return nil
		}
		p, err := config.ParsePrefix(lit)
		if err != nil {
			return nil // checkRanges refuses it at load
		}
		n = &nativeExpr{op: opInIPRange, prefix: p}
	}
	return n
}

// operand is the nativeExpr reading e, a string variable or
// request.headers['name'], or nil.
func operand(e ast.Expr) *nativeExpr {
	switch e.Kind() {
	case ast.IdentKind:
		if i, ok := varOf(e.AsIdent()); ok && i != varHeaders {
			return &nativeExpr{v: i}
		}
	case ast.CallKind:
		c := e.AsCall()
		args := c.Args()
		if c.FunctionName() != "_[_]" || len(args) != 2 || args[0].Kind() != ast.IdentKind || args[0].AsIdent() != "request.headers" {
			return nil
		}
		key, ok := stringLiteral(args[1])
		if !ok {
			return nil
		}
		return &nativeExpr{v: varHeaders, header: key, missing: errors.New("no such key: " + key)}
	}
	return nil
}

func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}
