package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds the configuration file (and any *_file secret) so that
// pointing moat at a device or a huge file fails fast. ReadFile enforces it
// for every reader: check, serve and live reload alike.
const MaxFileSize = 4 << 20

// Problem is one error or warning found in a configuration file.
type Problem struct {
	File   string
	Line   int
	Column int    // 0 when the problem is with a whole line or key
	Path   string // dotted key path, such as routes[1].backend
	Msg    string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Errors is every error found in one configuration file, in file order.
type Errors []Problem

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, expands, decodes, defaults and validates the file at path.
// The error, if any, is an Errors listing every problem found.
func Load(path string) (*Config, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for a file already in memory; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	l := &loader{file: name, lines: map[string]int{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: name, Msg: "the file is empty; see the README's configuration reference"}}
		}
		return nil, Errors{l.yamlProblem(err.Error())}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	l.expandEnv(root)
	cfg := &Config{Path: name}
	l.checkKeys(root, reflect.TypeOf(cfg).Elem(), "")
	{
		if err := root.Decode(cfg); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, m := range te.Errors {
					l.errs = append(l.errs, l.yamlProblem(m))
				}
			} else {
				l.errs = append(l.errs, l.yamlProblem(err.Error()))
			}
		}
	}
	// An empty entry ("routes: [~]", "name:" with nothing under it) decodes
	// to nil; validation reports it.
	for i, r := range cfg.Routes {
		if r != nil {
			r.Line = l.lines[fmt.Sprintf("routes[%d]", i)]
		}
	}
	for name, b := range cfg.Backends {
		if b != nil {
			b.CommandLine = l.line("backends." + name + ".command")
		}
	}
	for name, p := range cfg.SecurityPolicies {
		if p == nil {
			continue
		}
		for i, r := range p.Rules {
			if r == nil {
				continue
			}
			path := fmt.Sprintf("security_policies.%s.rules[%d]", name, i)
			r.Line = l.lines[path]
			r.ExprLine, r.ExprColumn = l.lines[path+".expr"], l.columns[path+".expr"]
		}
	}
	applyDefaults(cfg)
	v := &validator{loader: l, cfg: cfg}
	v.validate()
	cfg.Warnings = v.warnings
	if len(l.errs) > 0 {
		return nil, l.sorted()
	}
	return cfg, nil
}

// ReadFile reads a configuration or secret file of at most MaxFileSize
// bytes. It reads one byte past the bound and no more, so a device or a
// runaway file costs at most that much memory.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	n, err := b.ReadFrom(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if n > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d MiB, the most moat reads from a configuration or secret file: shorten it", path, MaxFileSize>>20)
	}
	return b.Bytes(), nil
}

// loader carries the state of one Parse: the file name, the line of every
// key path (so validation can point at the line), and the errors so far.
type loader struct {
	file    string
	lines   map[string]int
	columns map[string]int
	errs    Errors
}

func (l *loader) errorAt(path, format string, args ...any) {
	l.errs = append(l.errs, Problem{File: l.file, Line: l.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// line finds the line of path, or of its nearest ancestor that has one.
func (l *loader) line(path string) int {
	for path != "" {
		if n, ok := l.lines[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func (l *loader) yamlProblem(msg string) Problem {
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg = strings.TrimSpace(msg)
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return Problem{File: l.file, Line: n, Msg: m[2]}
	}
	return Problem{File: l.file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

func (l *loader) sorted() Errors {
	sort.SliceStable(l.errs, func(i, j int) bool { return l.errs[i].Line < l.errs[j].Line })
	return l.errs
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${NAME} (or ${NAME:-default}) in every scalar value.
// An unset variable without a default is an error: a silently empty secret
// is how a front door ends up open.
func (l *loader) expandEnv(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		var problems []string
		n.Value, problems = expand(n.Value, os.LookupEnv)
		for _, msg := range problems {
			l.errs = append(l.errs, Problem{File: l.file, Line: n.Line, Msg: msg})
		}
		// An expanded value is a string even if it looks like a number.
		if n.Tag == "" || n.Tag == "!" {
			n.Tag = "!!str"
		}
	}
	for _, c := range n.Content {
		l.expandEnv(c)
	}
}

// expand replaces ${NAME} and ${NAME:-default} in s in one pass, looking
// names up with lookup: an inserted value is taken as it is, never expanded
// again. It returns a message for each reference it cannot resolve: an
// unset name without a default, and a default holding another ${…} (which
// one pass would cut short, leaving a stray "}" in the value).
func expand(s string, lookup func(string) (string, bool)) (string, []string) {
	var problems []string
	out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if m[2] != "" && strings.Contains(m[3], "${") {
			problems = append(problems, fmt.Sprintf("the default of ${%s} holds another ${…}: defaults are used as written, so write the default value itself", m[1]))
			return ""
		}
		if v, ok := lookup(m[1]); ok {
			return v
		}
		if m[2] != "" {
			return m[3]
		}
		problems = append(problems, fmt.Sprintf("environment variable %s is not set (write ${%s:-default} for an optional one)", m[1], m[1]))
		return ""
	})
	return out, problems
}

var durationType = reflect.TypeOf(Duration(0))

// checkKeys walks the YAML tree beside the Go type it will decode into and
// reports every key the type does not have, with its line and a suggestion.
// It also records the line of every key path for later messages.
func (l *loader) checkKeys(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if _, ok := l.lines[path]; !ok && path != "" {
		l.lines[path] = n.Line
		if l.columns == nil {
			l.columns = map[string]int{}
		}
		l.columns[path] = n.Column
	}
	if t == durationType || n.Kind != yaml.MappingNode && reflect.PointerTo(t).Implements(unmarshalerType) || n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		// A type that decodes itself from a scalar or a list (Duration,
		// Member, usage: off, …) has no keys; a mapping it takes does.
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			l.errs = append(l.errs, Problem{File: l.file, Line: n.Line, Path: path, Msg: "expected a mapping of keys to values"})
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				l.checkKeys(v, t, path)
				continue
			}
			p := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("unknown key %q", k.Value)
				if s := suggest(k.Value, fields); s != "" {
					msg += fmt.Sprintf("; did you mean %q?", s)
				}
				l.errs = append(l.errs, Problem{File: l.file, Line: k.Line, Path: path, Msg: msg})
				continue
			}
			l.lines[p] = k.Line
			if l.columns == nil {
				l.columns = map[string]int{}
			}
			l.columns[p] = v.Column
			l.checkKeys(v, ft, p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			l.errs = append(l.errs, Problem{File: l.file, Line: n.Line, Path: path, Msg: "expected a mapping of names to values"})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			l.lines[p] = k.Line
			l.checkKeys(v, t.Elem(), p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.String && n.Kind == yaml.ScalarNode {
				return // a single string where a list is allowed
			}
			l.errs = append(l.errs, Problem{File: l.file, Line: n.Line, Path: path, Msg: "expected a list"})
			return
		}
		for i, c := range n.Content {
			l.checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = f.Type
	}
	return m
}

// suggest returns the known key closest to key, if it is a likely typo.
func suggest(key string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3
	for name := range fields {
		if d := editDistance(key, name); d < bestDist || d == bestDist && name < best {
			best, bestDist = name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// UnmarshalYAML parses "90s", "15m", "12h" or "7d". A bad value is reported
// with its line and decoding goes on, so every error is listed at once.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = Duration(v)
	return nil
}

// ParseDuration accepts Go durations plus a whole number of days ("7d").
func ParseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n < 100000 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q: write a number with a unit, such as 30s, 15m, 12h or 7d", s)
	}
	return v, nil
}

// ReadSecretFile reads a *_file secret: the file's content without the
// trailing newline. Errors are reported against path.
func (v *validator) readSecretFile(path, file string) string {
	data, err := ReadFile(file)
	if err != nil {
		v.errorAt(path, "cannot read secret file: %v", err)
		return ""
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		v.errorAt(path, "secret file %s is empty", file)
	}
	return s
}
