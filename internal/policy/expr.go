package policy

import (
	"fmt"
	"net/http"
	"net/netip"
	"path"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/route"
)

// Expression bounds. Cost is CEL's abstract unit (about one per operation
// or per byte scanned); the estimate is checked at load with every string
// taken at maxInputSize (server.max_header_bytes is capped to it).
const (
	maxCost      = 1_000_000
	maxInputSize = 64 << 10
)

// exprVars are the variables an expression may use, as in Cloud Armor.
var exprVars = []struct {
	name string
	typ  *cel.Type
}{
	{"request.path", cel.StringType},
	{"request.method", cel.StringType},
	{"request.query", cel.StringType},
	{"request.host", cel.StringType},
	{"request.scheme", cel.StringType},
	{"request.headers", cel.MapType(cel.StringType, cel.StringType)},
	{"origin.ip", cel.StringType},
}

func newCELEnv() (*cel.Env, error) {
	opts := []cel.EnvOption{
		cel.Function("inIpRange", cel.Overload("inIpRange_string_string",
			[]*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
			cel.BinaryBinding(inIPRange))),
		cel.Function("lower", cel.MemberOverload("string_lower",
			[]*cel.Type{cel.StringType}, cel.StringType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				s, ok := v.(types.String)
				if !ok {
					return types.MaybeNoSuchOverloadErr(v)
				}
				return types.String(strings.ToLower(string(s)))
			}))),
		cel.ParserExpressionSizeLimit(config.MaxExprLength),
		cel.ParserRecursionLimit(64),
	}
	for _, v := range exprVars {
		opts = append(opts, cel.Variable(v.name, v.typ))
	}
	return cel.NewEnv(opts...)
}

func inIPRange(ipv, cidrv ref.Val) ref.Val {
	ip, ok1 := ipv.(types.String)
	cidr, ok2 := cidrv.(types.String)
	if !ok1 || !ok2 {
		return types.MaybeNoSuchOverloadErr(ipv)
	}
	a, err := netip.ParseAddr(string(ip))
	if err != nil {
		return types.False
	}
	p, err := config.ParsePrefix(string(cidr))
	if err != nil {
		return types.NewErr("inIpRange: %v", err)
	}
	return types.Bool(p.Contains(a.Unmap()))
}

// exprError is a compile error at a position inside the expression: line
// is 1-based, column 0-based, as CEL reports them.
type exprError struct {
	line, column int
	msg          string
}

// compileExpr compiles src once, checks its types, its inIpRange ranges and
// its cost bound, and returns a program ready for concurrent evaluation.
func compileExpr(env *cel.Env, src string) (exprProgram, []exprError) {
	parsed, iss := env.Compile(src)
	if iss.Err() != nil {
		var errs []exprError
		for _, e := range iss.Errors() {
			errs = append(errs, exprError{e.Location.Line(), e.Location.Column(), e.Message})
		}
		return nil, errs
	}
	if parsed.OutputType() != cel.BoolType {
		return nil, []exprError{{1, 0, fmt.Sprintf("expression must be true or false, but it is a %s", parsed.OutputType())}}
	}
	if errs := checkRanges(parsed); len(errs) > 0 {
		return nil, errs
	}
	est, err := env.EstimateCost(parsed, sizeEstimator{})
	if err != nil {
		return nil, []exprError{{1, 0, fmt.Sprintf("cannot bound the expression's cost: %v", err)}}
	}
	if est.Max > maxCost {
		return nil, []exprError{{1, 0, fmt.Sprintf("expression may cost up to %d units on a large request; the limit is %d: simplify it", est.Max, maxCost)}}
	}
	// No runtime cost limit: the estimate above already bounds every
	// accepted expression (inputs are bounded by server.max_header_bytes,
	// at most maxInputSize), and tracking cost at run time doubled the
	// price of every evaluation.
	if n := nativeOf(parsed); n != nil {
		return n, nil
	}
	prg, err := celProgramOf(env, parsed)
	if err != nil {
		return nil, []exprError{{1, 0, err.Error()}}
	}
	return prg, nil
}

// celProgramOf is checked, an expression compileExpr accepted, for CEL's
// interpreter.
func celProgramOf(env *cel.Env, checked *cel.Ast) (celProgram, error) {
	prg, err := env.Program(checked,
		cel.OptimizeRegex(interpreter.MatchesRegexOptimization),
		cel.EvalOptions(cel.OptOptimize))
	return celProgram{prg}, err
}

// checkRanges rejects an inIpRange whose range is a constant that is not a
// CIDR, at load rather than on every request.
func checkRanges(a *cel.Ast) []exprError {
	native := a.NativeRep()
	var errs []exprError
	var walk func(e ast.Expr)
	walk = func(e ast.Expr) {
		switch e.Kind() {
		case ast.CallKind:
			c := e.AsCall()
			if c.FunctionName() == "inIpRange" && len(c.Args()) == 2 && c.Args()[1].Kind() == ast.LiteralKind {
				if s, ok := c.Args()[1].AsLiteral().(types.String); ok {
					if _, err := config.ParsePrefix(string(s)); err != nil {
						loc := native.SourceInfo().GetStartLocation(c.Args()[1].ID())
						errs = append(errs, exprError{loc.Line(), loc.Column(), "inIpRange: " + err.Error()})
					}
				}
			}
			if c.IsMemberFunction() {
				walk(c.Target())
			}
			for _, arg := range c.Args() {
				walk(arg)
			}
		case ast.SelectKind:
			walk(e.AsSelect().Operand())
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				walk(el)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				me := en.AsMapEntry()
				walk(me.Key())
				walk(me.Value())
			}
		case ast.ComprehensionKind:
			cp := e.AsComprehension()
			walk(cp.IterRange())
			walk(cp.AccuInit())
			walk(cp.LoopCondition())
			walk(cp.LoopStep())
			walk(cp.Result())
		}
	}
	walk(native.Expr())
	return errs
}

// sizeEstimator bounds every request string at maxInputSize (headers and
// URLs are bounded by the server long before that) and the header map at
// 256 entries.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if p := n.Path(); len(p) > 0 {
		if p[0] == "request.headers" && len(p) == 1 {
			return &checker.SizeEstimate{Min: 0, Max: 256}
		}
		return &checker.SizeEstimate{Min: 0, Max: maxInputSize}
	}
	return nil
}

func (sizeEstimator) EstimateCallCost(function, _ string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	switch function {
	case "lower":
		return &checker.CallEstimate{
			CostEstimate: checker.CostEstimate{Min: 1, Max: maxInputSize / 10},
			ResultSize:   &checker.SizeEstimate{Min: 0, Max: maxInputSize},
		}
	case "inIpRange":
		return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: 5}}
	}
	return nil
}

// activation gives an expression the request's variables, computing each
// only when asked, once per request, and handing CEL each as the value it
// works on (a types.String), so that rules reading the same variable share
// one conversion.
type activation struct {
	r       *http.Request
	scheme  string
	ip      netip.Addr
	path    string
	vals    [numVars]ref.Val
	headers headerMap
}

// Variables an activation caches, by index into activation.vals.
const (
	varPath = iota
	varMethod
	varQuery
	varHost
	varScheme
	varHeaders
	varIP
	numVars
)

func newActivation(r *http.Request, ip netip.Addr, scheme string) *activation {
	a := &activation{r: r, ip: ip, scheme: scheme}
	a.headers.h = r.Header
	return a
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	i, ok := varOf(name)
	if !ok {
		return nil, false
	}
	if i == varHeaders {
		return &a.headers, true
	}
	return a.value(i), true
}

// varOf is the index of the variable called name.
func varOf(name string) (int, bool) {
	switch name {
	case "request.path":
		return varPath, true
	case "request.method":
		return varMethod, true
	case "request.query":
		return varQuery, true
	case "request.host":
		return varHost, true
	case "request.scheme":
		return varScheme, true
	case "request.headers":
		return varHeaders, true
	case "origin.ip":
		return varIP, true
	}
	return 0, false
}

// value is string variable i as CEL works on it, computed once per request.
func (a *activation) value(i int) ref.Val {
	if a.vals[i] == nil {
		a.vals[i] = types.String(a.compute(i))
	}
	return a.vals[i]
}

// compute is the string value of variable i.
func (a *activation) compute(i int) string {
	switch i {
	case varPath:
		return a.cleanPath()
	case varMethod:
		return a.r.Method
	case varQuery:
		return a.r.URL.RawQuery
	case varHost:
		return route.Host(a.r.Host)
	case varScheme:
		return a.scheme
	case varIP:
		if a.ip.IsValid() {
			return a.ip.String()
		}
	}
	return ""
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// cleanPath is the decoded request path with dot segments and doubled
// slashes resolved, so /x/../admin and //admin cannot slip past a rule on
// /admin. A path with encoded characters (%2F, %2e…) is only decoded, not
// resolved: the backend may not decode them, and /admin%2F.. must still
// look like /admin to the rules.
func (a *activation) cleanPath() string {
	if a.path == "" {
		p := a.r.URL.Path
		switch {
		case p == "":
			a.path = "/"
		case a.r.URL.RawPath != "":
			a.path = p
		default:
			a.path = cleanPath(p)
		}
	}
	return a.path
}

func cleanPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// lowerHeaders is Cloud Armor's request.headers: lower-case names, repeated
// values joined with commas.
func lowerHeaders(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, vs := range h {
		m[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	return m
}

// headerMap is request.headers as CEL sees it: lowerHeaders(h), built only
// when an expression needs the whole map (its size, iteration, equality).
// A lookup by name, the common request.headers['user-agent'], reads h
// directly (findHeader) and builds nothing.
type headerMap struct {
	h    http.Header
	full traits.Mapper // lowerHeaders(h), once needed
}

var _ traits.Mapper = (*headerMap)(nil)

func (m *headerMap) all() traits.Mapper {
	if m.full == nil {
		m.full = types.NewStringStringMap(types.DefaultTypeAdapter, lowerHeaders(m.h))
	}
	return m.full
}

// Find implements traits.Mapper: the value lowerHeaders would hold under
// key, without building the map.
func (m *headerMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return m.all().Find(key)
	}
	v, found := findHeader(m.h, string(k))
	if !found {
		return nil, false
	}
	return types.String(v), true
}

// findHeader is lowerHeaders(h)[key] without building the map: the values
// of the header whose lower-cased name is key, joined with commas. Names
// that differ only in case (net/http canonicalises valid names, so only
// invalid ones can) are joined too, in sorted order, where lowerHeaders
// keeps one of them.
func findHeader(h http.Header, key string) (string, bool) {
	var name string
	var more []string
	for n := range h {
		if !lowerIs(n, key) {
			continue
		}
		if name == "" {
			name = n
		} else {
			more = append(more, n)
		}
	}
	if name == "" {
		return "", false
	}
	if more == nil {
		return strings.Join(h[name], ","), true
	}
	more = append(more, name)
	slices.Sort(more)
	var vs []string
	for _, n := range more {
		vs = append(vs, h[n]...)
	}
	return strings.Join(vs, ","), true
}

// lowerIs reports whether strings.ToLower(s) == lower, without allocating
// for an ASCII s (net/http refuses other header names; strings.ToLower
// decides for them).
func lowerIs(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strings.ToLower(s) == lower
		}
	}
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Get implements traits.Indexer.
func (m *headerMap) Get(key ref.Val) ref.Val {
	if v, found := m.Find(key); found {
		return v
	}
	if _, ok := key.(types.String); ok {
		return types.NewErr("no such key: %v", key)
	}
	return m.all().Get(key)
}

// Contains implements traits.Container.
func (m *headerMap) Contains(key ref.Val) ref.Val {
	if k, ok := key.(types.String); ok {
		_, found := findHeader(m.h, string(k))
		return types.Bool(found)
	}
	return m.all().Contains(key)
}

// The rest of traits.Mapper reads the whole map.

func (m *headerMap) ConvertToNative(t reflect.Type) (any, error) { return m.all().ConvertToNative(t) }
func (m *headerMap) ConvertToType(t ref.Type) ref.Val            { return m.all().ConvertToType(t) }
func (m *headerMap) Equal(other ref.Val) ref.Val                 { return m.all().Equal(other) }
func (m *headerMap) Type() ref.Type                              { return types.MapType }
func (m *headerMap) Value() any                                  { return m.all().Value() }
func (m *headerMap) Iterator() traits.Iterator                   { return m.all().Iterator() }
func (m *headerMap) Size() ref.Val                               { return m.all().Size() }
