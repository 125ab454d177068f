package gcpimport

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// maxFileSize bounds each Terraform file read.
const maxFileSize = 4 << 20

// module is a Terraform root module: its variables with their values and
// its resources, with what is needed to evaluate their arguments.
type module struct {
	dir       string
	files     []string // .tf files read, sorted
	vars      map[string]*variable
	locals    map[string]hclsyntax.Expression
	providers []*resource // provider blocks, for the report
	resources []*resource // resources and data sources in file order
	ctx       *hcl.EvalContext
}

// variable is a declared input variable.
type variable struct {
	name  string
	value cty.Value // cty.DynamicVal when nothing gives it a value
	from  string    // "default", a .tfvars file name, or "--var"
	decl  hcl.Range
}

// resource is one resource, data source or provider block.
type resource struct {
	mode  string // "resource", "data" or "provider"
	typ   string
	name  string
	body  *hclsyntax.Body
	decl  hcl.Range
	fate  string // what the import made of it, for the report
	gcpID string // its evaluated name argument, when it has one
}

// addr is the resource's Terraform address, as people write it.
func (r *resource) addr() string {
	switch r.mode {
	case "data":
		return "data." + r.typ + "." + r.name
	case "provider":
		return "provider " + r.typ
	}
	return r.typ + "." + r.name
}

// loadModule parses every .tf file of dir, then the variable values of
// terraform.tfvars, *.auto.tfvars and vars (as terraform's -var).
func loadModule(dir string, vars map[string]string) (*module, error) {
	m := &module{dir: dir, vars: map[string]*variable{}, locals: map[string]hclsyntax.Expression{}}
	paths, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s has no .tf files: give the directory that holds the load balancer's Terraform", dir)
	}
	sort.Strings(paths)
	var errs Errors
	for _, p := range paths {
		body, perrs := parseFile(p)
		errs = append(errs, perrs...)
		if body == nil {
			continue
		}
		m.files = append(m.files, p)
		errs = append(errs, m.read(body)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if err := m.assignVars(vars); err != nil {
		return nil, err
	}
	m.buildContext()
	return m, nil
}

// placeholder is the <your-…> kind of value a tutorial leaves to fill in.
var placeholder = regexp.MustCompile(`=\s*(<[^<>\n"]+>)`)

// parseFile parses one HCL file; errors carry file:line, and a tutorial's
// unquoted <placeholder> gets an error that says what to do.
func parseFile(path string) (*hclsyntax.Body, Errors) {
	src, err := readBounded(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if !diags.HasErrors() {
		return f.Body.(*hclsyntax.Body), nil
	}
	// A tutorial's unquoted placeholders stop the parser at the first
	// one: name them all, with what to do.
	var errs Errors
	for i, line := range strings.Split(string(src), "\n") {
		if m := placeholder.FindStringSubmatch(line); m != nil {
			errs = append(errs, Problem{File: path, Line: i + 1, Msg: fmt.Sprintf("%s is a placeholder, not a value: write the value in quotes", m[1])})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return nil, diagProblems(diags)
}

func readBounded(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return os.ReadFile(path)
}

// read records the variables, locals, providers and resources of one file.
func (m *module) read(body *hclsyntax.Body) Errors {
	var errs Errors
	for _, b := range body.Blocks {
		switch b.Type {
		case "variable":
			v := &variable{name: b.Labels[0], value: cty.DynamicVal, decl: b.DefRange()}
			if a, ok := b.Body.Attributes["default"]; ok {
				val, diags := a.Expr.Value(nil)
				if diags.HasErrors() {
					errs = append(errs, diagProblems(diags)...)
					continue
				}
				v.value, v.from = val, "default"
			}
			m.vars[v.name] = v
		case "locals":
			for name, a := range b.Body.Attributes {
				m.locals[name] = a.Expr
			}
		case "provider":
			m.providers = append(m.providers, &resource{mode: "provider", typ: b.Labels[0], body: b.Body, decl: b.DefRange()})
		case "resource", "data":
			if len(b.Labels) != 2 {
				continue
			}
			m.resources = append(m.resources, &resource{mode: b.Type, typ: b.Labels[0], name: b.Labels[1], body: b.Body, decl: b.DefRange()})
		}
	}
	return errs
}

// assignVars applies terraform.tfvars, then *.auto.tfvars, then vars, in
// Terraform's order of precedence.
func (m *module) assignVars(vars map[string]string) error {
	files := []string{filepath.Join(m.dir, "terraform.tfvars")}
	auto, _ := filepath.Glob(filepath.Join(m.dir, "*.auto.tfvars"))
	sort.Strings(auto)
	var errs Errors
	for _, p := range append(files, auto...) {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		body, perrs := parseFile(p)
		if body == nil {
			errs = append(errs, perrs...)
			continue
		}
		for name, a := range body.Attributes {
			val, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				errs = append(errs, diagProblems(diags)...)
				continue
			}
			v, ok := m.vars[name]
			if !ok {
				errs = append(errs, Problem{File: p, Line: a.SrcRange.Start.Line, Msg: fmt.Sprintf("no variable %q is declared", name)})
				continue
			}
			v.value, v.from = val, filepath.Base(p)
		}
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v, ok := m.vars[name]
		if !ok {
			errs = append(errs, Problem{Msg: fmt.Sprintf("--var %s: no variable %q is declared in %s", name, name, m.dir)})
			continue
		}
		v.value, v.from = cliValue(vars[name], v.value), "--var"
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// cliValue reads a --var value as Terraform does: a string, unless the
// variable holds a list or map, where it is an HCL expression.
func cliValue(s string, current cty.Value) cty.Value {
	t := current.Type()
	if t.IsListType() || t.IsTupleType() || t.IsMapType() || t.IsObjectType() || t.IsSetType() {
		if expr, diags := hclsyntax.ParseExpression([]byte(s), "--var", hcl.InitialPos); !diags.HasErrors() {
			if v, diags := expr.Value(nil); !diags.HasErrors() {
				return v
			}
		}
	}
	return cty.StringVal(s)
}

// functions are the Terraform functions the import evaluates; a call to
// any other makes that value unknown.
var functions = map[string]function.Function{
	"lower": stdlib.LowerFunc, "upper": stdlib.UpperFunc, "format": stdlib.FormatFunc,
	"join": stdlib.JoinFunc, "concat": stdlib.ConcatFunc, "trimspace": stdlib.TrimSpaceFunc,
	"replace": stdlib.ReplaceFunc, "split": stdlib.SplitFunc, "coalesce": stdlib.CoalesceFunc,
	"tostring": stdlib.MakeToFunc(cty.String), "tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
	"trimsuffix": stdlib.TrimSuffixFunc, "trimprefix": stdlib.TrimPrefixFunc,
}

// buildContext makes the evaluation context: var, local, and for every
// resource and data source its name (also as id and self_link, which is
// how Terraform files refer to one another).
func (m *module) buildContext() {
	vars := map[string]cty.Value{}
	for name, v := range m.vars {
		vars[name] = v.value
	}
	m.ctx = &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}, Functions: functions}
	// Locals may use one another: settle them in a few passes.
	locals := map[string]cty.Value{}
	for range 4 {
		m.ctx.Variables["local"] = cty.ObjectVal(locals)
		next := map[string]cty.Value{}
		for name, expr := range m.locals {
			v, diags := expr.Value(m.ctx)
			if diags.HasErrors() {
				v = cty.DynamicVal
			}
			next[name] = v
		}
		locals = next
	}
	m.ctx.Variables["local"] = cty.ObjectVal(locals)

	byType := map[string]map[string]map[string]cty.Value{}
	for _, r := range m.resources {
		name := cty.DynamicVal
		if s, ok := m.stringAttr(r.body, "name"); ok {
			name = cty.StringVal(s)
			r.gcpID = s
		}
		key := r.typ
		if r.mode == "data" {
			key = "data." + r.typ
		}
		if byType[key] == nil {
			byType[key] = map[string]map[string]cty.Value{}
		}
		byType[key][r.name] = map[string]cty.Value{"name": name, "id": name, "self_link": name}
	}
	data := map[string]cty.Value{}
	for key, rs := range byType {
		obj := map[string]cty.Value{}
		for name, attrs := range rs {
			obj[name] = cty.DynamicVal
			if attrs["name"].IsKnown() {
				obj[name] = cty.ObjectVal(attrs)
			}
		}
		if typ, ok := strings.CutPrefix(key, "data."); ok {
			data[typ] = cty.ObjectVal(obj)
		} else {
			m.ctx.Variables[key] = cty.ObjectVal(obj)
		}
	}
	m.ctx.Variables["data"] = cty.ObjectVal(data)
}

// value evaluates an attribute of body. ok is false when the attribute is
// absent or its value cannot be known here (an unset variable, another
// resource's computed attribute).
func (m *module) value(body *hclsyntax.Body, name string) (cty.Value, bool) {
	a, ok := body.Attributes[name]
	if !ok {
		return cty.NilVal, false
	}
	v, diags := a.Expr.Value(m.ctx)
	if diags.HasErrors() || !v.IsWhollyKnown() || v.IsNull() {
		return cty.NilVal, false
	}
	return v, true
}

// stringAttr evaluates a string attribute.
func (m *module) stringAttr(body *hclsyntax.Body, name string) (string, bool) {
	v, ok := m.value(body, name)
	if !ok {
		return "", false
	}
	v, err := convert.Convert(v, cty.String)
	if err != nil {
		return "", false
	}
	return v.AsString(), true
}

// numberAttr evaluates a whole-number attribute.
func (m *module) numberAttr(body *hclsyntax.Body, name string) (int64, bool) {
	v, ok := m.value(body, name)
	if !ok {
		return 0, false
	}
	v, err := convert.Convert(v, cty.Number)
	if err != nil {
		return 0, false
	}
	n, acc := v.AsBigFloat().Int64()
	return n, acc == 0
}

// boolAttr evaluates a boolean attribute.
func (m *module) boolAttr(body *hclsyntax.Body, name string) (value, ok bool) {
	v, ok := m.value(body, name)
	if !ok {
		return false, false
	}
	v, err := convert.Convert(v, cty.Bool)
	if err != nil {
		return false, false
	}
	return v.True(), true
}

// listAttr evaluates a list of strings.
func (m *module) listAttr(body *hclsyntax.Body, name string) ([]string, bool) {
	v, ok := m.value(body, name)
	if !ok || !(v.Type().IsListType() || v.Type().IsTupleType() || v.Type().IsSetType()) {
		return nil, false
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		s, err := convert.Convert(e, cty.String)
		if err != nil || s.IsNull() {
			return nil, false
		}
		out = append(out, s.AsString())
	}
	return out, true
}

// unknown explains why an attribute could not be evaluated: the unset
// variables it uses, or the references it makes.
func (m *module) unknown(body *hclsyntax.Body, name string) string {
	a, ok := body.Attributes[name]
	if !ok {
		return name + " is not set"
	}
	var unset, refs []string
	for _, t := range a.Expr.Variables() {
		root := t.RootName()
		if root == "var" && len(t) > 1 {
			if ta, ok := t[1].(hcl.TraverseAttr); ok {
				if v := m.vars[ta.Name]; v == nil || !v.value.IsKnown() {
					unset = append(unset, ta.Name)
				}
			}
			continue
		}
		refs = append(refs, traversalString(t))
	}
	switch {
	case len(unset) > 0:
		return fmt.Sprintf("%s needs variable %s, which has no value: set it in terraform.tfvars or pass --var %s=VALUE", name, strings.Join(unset, ", "), unset[0])
	case len(refs) > 0:
		return fmt.Sprintf("%s is %s, which is only known after terraform apply", name, strings.Join(refs, ", "))
	}
	return name + " cannot be evaluated outside Terraform"
}

// ref returns the resource an attribute's expression points at
// (google_x.name.id, data.google_x.name.name, or a literal GCP name).
func (m *module) ref(body *hclsyntax.Body, name string) *resource {
	a, ok := body.Attributes[name]
	if !ok {
		return nil
	}
	if t, diags := hcl.AbsTraversalForExpr(a.Expr); !diags.HasErrors() && len(t) >= 2 {
		mode, parts := "resource", t
		if t.RootName() == "data" {
			mode, parts = "data", t[1:]
		}
		typ := traverseName(parts, 0)
		label := traverseName(parts, 1)
		for _, r := range m.resources {
			if r.mode == mode && r.typ == typ && r.name == label {
				return r
			}
		}
	}
	// A literal (or evaluable) name or path: match the last segment
	// against the resources' names.
	if s, ok := m.stringAttr(body, name); ok {
		last := s[strings.LastIndex(s, "/")+1:]
		for _, r := range m.resources {
			if r.gcpID != "" && r.gcpID == last {
				return r
			}
		}
	}
	return nil
}

func traverseName(t hcl.Traversal, i int) string {
	if i >= len(t) {
		return ""
	}
	switch s := t[i].(type) {
	case hcl.TraverseRoot:
		return s.Name
	case hcl.TraverseAttr:
		return s.Name
	}
	return ""
}

func traversalString(t hcl.Traversal) string {
	var b strings.Builder
	for i := range t {
		if n := traverseName(t, i); n != "" {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// blocks returns the nested blocks of body of the given type.
func blocks(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// block returns the first nested block of the given type, or nil.
func block(body *hclsyntax.Body, typ string) *hclsyntax.Body {
	for _, b := range body.Blocks {
		if b.Type == typ {
			return b.Body
		}
	}
	return nil
}

// ofType returns the resources (not data sources) of the given types.
func (m *module) ofType(types ...string) []*resource {
	var out []*resource
	for _, r := range m.resources {
		if r.mode == "resource" && contains(types, r.typ) {
			out = append(out, r)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func diagProblem(d *hcl.Diagnostic) Problem {
	p := Problem{Msg: strings.TrimSuffix(d.Summary, ".")}
	if d.Detail != "" {
		p.Msg += ": " + d.Detail
	}
	if d.Subject != nil {
		p.File, p.Line = d.Subject.Filename, d.Subject.Start.Line
	}
	return p
}

func diagProblems(diags hcl.Diagnostics) Errors {
	var errs Errors
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs = append(errs, diagProblem(d))
		}
	}
	return errs
}
