package checks

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// cloudRun is the Cloud Run module; configModule renders its moat.yaml.
const (
	cloudRun     = "terraform/cloud-run"
	configModule = "terraform/cloud-run/config"
	terraformIns = "Terraform 1.11 comes with this machine's image"
)

// otherSchemas are the few types from outside the google provider the
// module uses, written from their documentation: Terraform's built-in
// terraform_data and the random provider's (3.7) ephemeral random_password.
var otherSchemas = map[string]*tfBlock{
	"ephemeral.random_password": {
		attrs: map[string]bool{"length": true, "special": false, "upper": false, "lower": false, "numeric": false,
			"min_lower": false, "min_upper": false, "min_numeric": false, "min_special": false, "override_special": false},
		outputs: map[string]bool{"result": true},
	},
	"resource.terraform_data": {
		attrs:   map[string]bool{"input": false, "triggers_replace": false},
		outputs: map[string]bool{"id": true, "input": true, "output": true},
	},
}

// Meta-arguments Terraform itself takes in every resource block.
var metaAttrs = map[string]bool{"count": true, "for_each": true, "depends_on": true, "provider": true}
var metaBlocks = map[string]bool{"lifecycle": true, "provisioner": true, "connection": true}

// tfModule is a parsed Terraform module.
type tfModule struct {
	dir       string
	bodies    []*hclsyntax.Body
	resources map[string]*hclsyntax.Block // "resource.TYPE.NAME", "data.…", "ephemeral.…"
	variables map[string]*hclsyntax.Block
	locals    map[string]bool
	modules   map[string]*hclsyntax.Block
	outputs   map[string]bool
	providers []*hclsyntax.Block
	iterators map[string]bool // dynamic blocks' iterator names
}

func parseModule(t *testing.T, rel string) *tfModule {
	t.Helper()
	dir := filepath.Join(deployDir, rel)
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s: %v", dir, err)
	}
	m := &tfModule{dir: dir, resources: map[string]*hclsyntax.Block{}, variables: map[string]*hclsyntax.Block{},
		locals: map[string]bool{}, modules: map[string]*hclsyntax.Block{}, outputs: map[string]bool{}, iterators: map[string]bool{}}
	p := hclparse.NewParser()
	for _, f := range files {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %s", f, diags.Error())
		}
		body := file.Body.(*hclsyntax.Body)
		m.bodies = append(m.bodies, body)
		for _, b := range body.Blocks {
			switch b.Type {
			case "resource", "data", "ephemeral":
				key := b.Type + "." + b.Labels[0] + "." + b.Labels[1]
				if m.resources[key] != nil {
					t.Errorf("%s declared twice", key)
				}
				m.resources[key] = b
			case "variable":
				m.variables[b.Labels[0]] = b
			case "locals":
				for name := range b.Body.Attributes {
					m.locals[name] = true
				}
			case "module":
				m.modules[b.Labels[0]] = b
			case "output":
				m.outputs[b.Labels[0]] = true
			case "provider":
				m.providers = append(m.providers, b)
			case "terraform":
			default:
				t.Errorf("%s: unexpected top-level block %q", b.Range(), b.Type)
			}
		}
	}
	for _, body := range m.bodies {
		walkBlocks(body, func(b *hclsyntax.Block) {
			if b.Type == "dynamic" {
				name := b.Labels[0]
				if it, ok := b.Body.Attributes["iterator"]; ok {
					name = hcl.ExprAsKeyword(it.Expr)
				}
				m.iterators[name] = true
			}
		})
	}
	return m
}

func walkBlocks(body *hclsyntax.Body, fn func(*hclsyntax.Block)) {
	for _, b := range body.Blocks {
		fn(b)
		walkBlocks(b.Body, fn)
	}
}

func walkAttributes(body *hclsyntax.Body, fn func(*hclsyntax.Attribute)) {
	for _, a := range body.Attributes {
		fn(a)
	}
	for _, b := range body.Blocks {
		walkAttributes(b.Body, fn)
	}
}

func TestTerraformIsFormatted(t *testing.T) {
	terraform := tool(t, "terraform", terraformIns)
	run(t, deployDir, nil, terraform, "fmt", "-check", "-recursive", "-diff", "terraform")
}

// TestTerraformMatchesTheGoogleProviderSchema checks what `terraform
// validate` would, without the providers it would download: every resource
// type exists, every argument and block is one the type takes, every
// required one is set, and every reference names something declared (with
// an attribute its type has).
func TestTerraformMatchesTheGoogleProviderSchema(t *testing.T) {
	schema := loadGoogleSchema(t)
	for _, rel := range []string{cloudRun, configModule} {
		m := parseModule(t, rel)
		schemaOf := func(kind, typ string) *tfBlock {
			if sch := otherSchemas[kind+"."+typ]; sch != nil {
				return sch
			}
			if strings.HasPrefix(typ, "google_") {
				return schema.lookup(kind + "." + typ)
			}
			return nil
		}
		for key, b := range m.resources {
			sch := schemaOf(b.Type, b.Labels[0])
			if sch == nil {
				t.Errorf("%s: %s: no such %s type in hashicorp/google 6.50 (or the types listed in otherSchemas)", b.Range(), key, b.Type)
				continue
			}
			checkBody(t, key, b.Body, sch, true)
		}
		for _, p := range m.providers {
			if p.Labels[0] != "google" {
				t.Errorf("%s: provider %q has no schema here", p.Range(), p.Labels[0])
				continue
			}
			checkBody(t, "provider google", p.Body, schema.lookup("provider"), false)
		}
		checkReferences(t, m, schemaOf)
		for name, call := range m.modules {
			checkModuleCall(t, name, call, m)
		}
	}
}

// checkBody checks body against sch; top is a resource's own body, where
// Terraform's meta-arguments are allowed too.
func checkBody(t *testing.T, where string, body *hclsyntax.Body, sch *tfBlock, top bool) {
	t.Helper()
	for name, a := range body.Attributes {
		switch {
		case top && metaAttrs[name]:
		case sch.blocks[name] != nil:
			t.Errorf("%s: %s: %q is a block: write %s { … }", a.SrcRange, where, name, name)
		case !hasKey(sch.attrs, name):
			t.Errorf("%s: %s: unknown argument %q%s", a.SrcRange, where, name, closest(name, sch))
		}
	}
	present := map[string]bool{}
	for _, b := range body.Blocks {
		name, content := b.Type, b.Body
		if top && metaBlocks[name] {
			continue
		}
		if name == "dynamic" {
			name = b.Labels[0]
			content = nil
			for _, c := range b.Body.Blocks {
				if c.Type == "content" {
					content = c.Body
				}
			}
			if content == nil {
				t.Errorf("%s: %s: dynamic %q has no content block", b.Range(), where, name)
				continue
			}
		}
		nested := sch.blocks[name]
		if nested == nil {
			if hasKey(sch.attrs, name) {
				t.Errorf("%s: %s: %q is an argument: write %s = …", b.Range(), where, name, name)
			} else {
				t.Errorf("%s: %s: unknown block %q%s", b.Range(), where, name, closest(name, sch))
			}
			continue
		}
		present[name] = true
		checkBody(t, where+"."+name, content, nested.block, false)
	}
	for name, required := range sch.attrs {
		if _, ok := body.Attributes[name]; required && !ok {
			t.Errorf("%s: %s: required argument %q is missing", body.SrcRange, where, name)
		}
	}
	for name, nested := range sch.blocks {
		if nested.required && !present[name] {
			t.Errorf("%s: %s: required block %q is missing", body.SrcRange, where, name)
		}
	}
}

func hasKey(m map[string]bool, k string) bool {
	_, ok := m[k]
	return ok
}

// closest suggests the known name nearest to name.
func closest(name string, sch *tfBlock) string {
	var names []string
	for n := range sch.attrs {
		names = append(names, n)
	}
	for n := range sch.blocks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.Contains(n, name) || strings.Contains(name, n) {
			return "; did you mean " + n + "?"
		}
	}
	return ""
}

// checkReferences resolves every reference in m's expressions.
func checkReferences(t *testing.T, m *tfModule, schemaOf func(kind, typ string) *tfBlock) {
	t.Helper()
	for _, body := range m.bodies {
		for _, b := range body.Blocks {
			// A variable's type and the terraform block's settings are
			// not references.
			if b.Type == "variable" || b.Type == "terraform" {
				continue
			}
			walkAttributes(b.Body, func(a *hclsyntax.Attribute) {
				for _, tr := range a.Expr.Variables() {
					checkTraversal(t, m, tr, schemaOf)
				}
			})
		}
	}
}

func checkTraversal(t *testing.T, m *tfModule, tr hcl.Traversal, schemaOf func(kind, typ string) *tfBlock) {
	t.Helper()
	root := tr.RootName()
	step := func(i int) string {
		for ; i < len(tr); i++ {
			if a, ok := tr[i].(hcl.TraverseAttr); ok {
				return a.Name
			}
			if _, ok := tr[i].(hcl.TraverseIndex); !ok {
				return ""
			}
		}
		return ""
	}
	// attrAfter is the first attribute name after position i, skipping an
	// index ([0], ["key"]).
	attrAfter := func(i int) string {
		if i < len(tr) {
			if _, ok := tr[i].(hcl.TraverseIndex); ok {
				i++
			}
		}
		if i < len(tr) {
			if a, ok := tr[i].(hcl.TraverseAttr); ok {
				return a.Name
			}
		}
		return ""
	}
	at := tr.SourceRange()
	switch root {
	case "path", "terraform", "count", "each", "self":
	case "var":
		if name := step(1); m.variables[name] == nil {
			t.Errorf("%s: var.%s is not declared", at, name)
		}
	case "local":
		if name := step(1); !m.locals[name] {
			t.Errorf("%s: local.%s is not declared", at, name)
		}
	case "module":
		if name := step(1); m.modules[name] == nil {
			t.Errorf("%s: module.%s is not declared", at, name)
		}
	case "data", "ephemeral":
		typ, name := step(1), step(2)
		key := root + "." + typ + "." + name
		if m.resources[key] == nil {
			t.Errorf("%s: %s is not declared", at, key)
			return
		}
		checkAttrRef(t, at, key, attrAfter(3), schemaOf(root, typ))
	default:
		if m.iterators[root] {
			return
		}
		name := step(1)
		key := "resource." + root + "." + name
		if m.resources[key] == nil {
			t.Errorf("%s: %s.%s is not declared", at, root, name)
			return
		}
		checkAttrRef(t, at, key, attrAfter(2), schemaOf("resource", root))
	}
}

func checkAttrRef(t *testing.T, at hcl.Range, key, attr string, sch *tfBlock) {
	t.Helper()
	if attr == "" || sch == nil {
		return
	}
	if !sch.outputs[attr] && !hasKey(sch.attrs, attr) && sch.blocks[attr] == nil {
		t.Errorf("%s: %s has no attribute %q", at, key, attr)
	}
}

// checkModuleCall checks a module block's arguments against the child's
// variables: each required one given, none unknown, and the outputs read.
func checkModuleCall(t *testing.T, name string, call *hclsyntax.Block, parent *tfModule) {
	t.Helper()
	src, diags := call.Body.Attributes["source"].Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("module %s: source: %s", name, diags.Error())
	}
	rel, err := filepath.Rel(deployDir, filepath.Join(parent.dir, src.AsString()))
	if err != nil {
		t.Fatal(err)
	}
	child := parseModule(t, rel)
	for arg, a := range call.Body.Attributes {
		if arg != "source" && child.variables[arg] == nil {
			t.Errorf("%s: module %s: %s has no variable %q", a.SrcRange, name, rel, arg)
		}
	}
	for v, b := range child.variables {
		if _, hasDefault := b.Body.Attributes["default"]; !hasDefault && call.Body.Attributes[v] == nil {
			t.Errorf("%s: module %s: required variable %q is not given", call.Range(), name, v)
		}
	}
}

// TestTerraformKeepsSecretsOutOfTheState: every secret the module writes
// goes through a write-only argument; the one plain secret_data is the
// moat.yaml, which holds no secret.
func TestTerraformKeepsSecretsOutOfTheState(t *testing.T) {
	m := parseModule(t, cloudRun)
	for key, b := range m.resources {
		attrs := b.Body.Attributes
		switch b.Labels[0] {
		case "google_secret_manager_secret_version":
			if _, plain := attrs["secret_data"]; plain && key != "resource.google_secret_manager_secret_version.config" {
				t.Errorf("%s: %s writes secret_data, which lands in the state: use secret_data_wo", b.Range(), key)
			}
		case "google_sql_user":
			if _, plain := attrs["password"]; plain {
				t.Errorf("%s: %s sets password, which lands in the state: use password_wo", b.Range(), key)
			}
		}
	}
	v := m.variables["google_client_secret"]
	if v == nil {
		t.Fatal("no variable google_client_secret")
	}
	e, ok := v.Body.Attributes["ephemeral"]
	if val, _ := e.Expr.Value(nil); !ok || !val.True() {
		t.Error("variable google_client_secret is not ephemeral: it would be saved in the plan")
	}
}

// TestTheRenderedMoatYamlPassesMoatCheck renders moat.yaml as the module
// does, with the example terraform.tfvars (the seed's case): the real
// terraform applies the config module with the values the root module
// passes it, and moat check must accept the result.
func TestTheRenderedMoatYamlPassesMoatCheck(t *testing.T) {
	terraform := tool(t, "terraform", terraformIns)
	root := parseModule(t, cloudRun)
	call := root.modules["config"]
	if call == nil {
		t.Fatal("the Cloud Run module does not call ./config")
	}
	values := exampleValues(t, root)
	// What the root module passes that is not a variable: addresses of
	// what it creates, stood in for by plausible values.
	created := map[string]any{
		"port":            8080,
		"database_host":   "10.20.0.3",
		"redis_host":      "10.20.0.4",
		"trusted_proxies": []string{"169.254.0.0/16", "34.120.0.9/32"},
	}
	vars := map[string]any{}
	for arg, a := range call.Body.Attributes {
		if arg == "source" {
			continue
		}
		if tr, ok := a.Expr.(*hclsyntax.ScopeTraversalExpr); ok && tr.Traversal.RootName() == "var" {
			name := tr.Traversal[1].(hcl.TraverseAttr).Name
			v, ok := values[name]
			if !ok {
				t.Fatalf("%s: var.%s has no value in terraform.tfvars.example and no default", a.SrcRange, name)
			}
			vars[arg] = v
			continue
		}
		v, ok := created[arg]
		if !ok {
			t.Fatalf("%s: module config's %s is computed; give the test a stand-in value for it", a.SrcRange, arg)
		}
		vars[arg] = v
	}
	dir := filepath.Join(t.TempDir(), "config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(deployDir, configModule))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(deployDir, configModule, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := json.Marshal(vars)
	if err := os.WriteFile(filepath.Join(dir, "test.tfvars.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, dir, nil, terraform, "init", "-input=false", "-no-color")
	run(t, dir, nil, terraform, "apply", "-auto-approve", "-input=false", "-no-color", "-var-file=test.tfvars.json")
	yaml := run(t, dir, nil, terraform, "output", "-raw", "-no-color", "moat_yaml")
	out := moatCheck(t, "cloud-run.yaml", []byte(yaml),
		"MOAT_DATABASE_PASSWORD=generated", "MOAT_GOOGLE_CLIENT_SECRET=from-the-console", "MOAT_REDIS_AUTH=from-memorystore")
	for _, want := range []string{
		"configuration is valid (2 routes",
		"dash.example.com ", "login google; allow domain:example.com, user:alice@example.org",
		"dash-partner.example.com ", "login password; allow group:customer-a", "customer-vpn-only",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("moat check output lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{`https_addr: "off"`, `trusted_proxies: ["169.254.0.0/16","34.120.0.9/32"]`, `["203.0.113.7/32"]`, "@10.20.0.3:5432/moat?sslmode=require", "10.20.0.4:6379"} {
		if !strings.Contains(yaml, want) {
			t.Errorf("rendered moat.yaml lacks %s:\n%s", want, yaml)
		}
	}
}

// exampleValues returns the root module's variable values for the example
// terraform.tfvars: its settings over the variables' defaults. Every
// setting must name a declared variable, and every variable without a
// default must be set (but the ephemeral client secret, given at apply).
func exampleValues(t *testing.T, root *tfModule) map[string]any {
	t.Helper()
	values := map[string]any{}
	for name, b := range root.variables {
		if d, ok := b.Body.Attributes["default"]; ok {
			values[name] = ctyToGo(t, d.Expr)
		}
	}
	path := filepath.Join(deployDir, cloudRun, "terraform.tfvars.example")
	file, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatalf("parse %s: %s", path, diags.Error())
	}
	attrs, diags := file.Body.JustAttributes()
	if diags.HasErrors() {
		t.Fatalf("%s: %s", path, diags.Error())
	}
	for name, a := range attrs {
		if root.variables[name] == nil {
			t.Errorf("%s: %s is not a variable of the module", a.Range, name)
			continue
		}
		values[name] = ctyToGo(t, a.Expr.(hclsyntax.Expression))
	}
	for name, b := range root.variables {
		if _, ok := values[name]; !ok && name != "google_client_secret" {
			t.Errorf("%s: variable %s has no default and the example does not set it", b.Range(), name)
		}
	}
	return values
}

// ctyToGo evaluates a literal expression into plain Go values for JSON.
func ctyToGo(t *testing.T, expr hcl.Expression) any {
	t.Helper()
	v, diags := expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", expr.Range(), diags.Error())
	}
	if v.IsNull() {
		return nil
	}
	data, err := ctyjson.SimpleJSONValue{Value: v}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
