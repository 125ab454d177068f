// Package policy enforces security policies in the Cloud Armor model: rules
// ordered by priority, each matching on source IP ranges (any number, in a
// CIDR set searched in logarithmic time) and/or a CEL expression, with an
// action — allow, deny(status), redirect(URL), throttle, rate_based_ban — and
// a preview flag. Requests the rules let through may then be inspected by a
// web application firewall (the Inspector).
//
// An Engine is compiled once from a configuration and is immutable: a reload
// builds a new Engine beside the old one, sharing the same rate-limit Counter
// so counts and bans survive.
package policy

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/cel-go/cel"

	"github.com/moat-dev/moat/internal/clientip"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/ratelimit"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/web"
)

// WAFVerdict is what an Inspector found. Its fields are those of
// waf.Verdict, so a server adapts a *waf.Firewall with a type conversion.
type WAFVerdict struct {
	// Blocked: the request must be refused with Status (never in preview).
	Blocked bool
	// WouldBlock: the rules decided to block, enforced or not (preview).
	WouldBlock bool
	// Status is the HTTP status the rules chose, 0 when nothing blocked.
	Status int
	// RuleIDs are the rules that matched.
	RuleIDs []int
	// Message is the blocking (or last) rule's message.
	Message string
}

// Inspector inspects a request the rules let through, such as a WAF.
type Inspector interface {
	Inspect(r *http.Request) (WAFVerdict, error)
}

// InspectorFunc adapts a function to Inspector.
type InspectorFunc func(r *http.Request) (WAFVerdict, error)

// Inspect implements Inspector.
func (f InspectorFunc) Inspect(r *http.Request) (WAFVerdict, error) { return f(r) }

// Options are what an Engine takes from outside its configuration. The zero
// value works: in-memory counters, slog.Default, no WAF.
type Options struct {
	// Counter keeps rate-limit counts and bans. The server creates it once
	// (ratelimit.Open(cfg.Counters)) and passes it to every Engine it
	// builds, so counts survive reloads. Nil means a fresh in-memory one.
	Counter ratelimit.Counter
	// NewInspector builds the inspector for a policy with a waf: block. A
	// policy with waf: and no NewInspector is an error: moat fails closed.
	NewInspector func(policy string, cfg *config.WAF) (Inspector, error)
	// Logger receives one record per decision. Nil means slog.Default().
	Logger *slog.Logger

	// skipWAF leaves WAF blocks out (for Check).
	skipWAF bool
}

// Engine holds every compiled security policy of one configuration.
type Engine struct {
	policies      map[string]*Policy
	defaultPolicy string
	counter       ratelimit.Counter
	failClosed    bool
	log           *slog.Logger
	lastFailLog   atomic.Int64
}

// Policy is one compiled security policy.
type Policy struct {
	name  string
	rules []*rule // by priority
	// hasDefault: the rule at MaxPriority exists; otherwise no match allows.
	hasDefault bool
	inspector  Inspector
	wafSets    []string
	e          *Engine
	// stats caches each kind of decision's counter and access-log label.
	stats decisionCache
}

type rule struct {
	priority int64
	desc     string
	preview  bool
	action   config.Action
	// Source IP match: nil when the rule has no match block.
	ips      *cidrSet
	prefixes []netip.Prefix
	anyIP    bool
	expr     string
	prg      exprProgram
	limit    *rateLimit
}

type rateLimit struct {
	lim    ratelimit.Limit
	keys   []string
	exceed config.Action
}

// New compiles every security policy of cfg (already validated by config
// loading). Expression errors come back as config.Errors with the file,
// line and column of the mistake.
func New(cfg *config.Config, opts Options) (*Engine, error) {
	e := &Engine{
		policies:      map[string]*Policy{},
		defaultPolicy: cfg.Server.DefaultSecurityPolicy,
		counter:       opts.Counter,
		failClosed:    cfg.CountersFail == "closed",
		log:           opts.Logger,
	}
	if e.counter == nil {
		e.counter = ratelimit.NewMemory(0)
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: build expression environment: %w", err)
	}
	pos := &positions{file: cfg.Path}
	var errs config.Errors
	names := make([]string, 0, len(cfg.SecurityPolicies))
	for name := range cfg.SecurityPolicies {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		sp := cfg.SecurityPolicies[name]
		p := &Policy{name: name, e: e}
		base := "security_policies." + name
		if sp == nil {
			errs = append(errs, config.Problem{File: cfg.Path, Path: base, Msg: "policy has no rules"})
			continue
		}
		for i, rc := range sp.Rules {
			path := fmt.Sprintf("%s.rules[%d]", base, i)
			r, probs := compileRule(env, pos, path, rc)
			errs = append(errs, probs...)
			if r != nil {
				p.rules = append(p.rules, r)
				if r.priority == config.MaxPriority {
					p.hasDefault = true
				}
			}
		}
		sort.SliceStable(p.rules, func(i, j int) bool { return p.rules[i].priority < p.rules[j].priority })
		if sp.WAF != nil && !opts.skipWAF {
			if opts.NewInspector == nil {
				errs = append(errs, config.Problem{File: cfg.Path, Path: base + ".waf", Msg: "the WAF is configured but this build has no WAF engine wired in"})
			} else if ins, err := opts.NewInspector(name, sp.WAF); err != nil {
				errs = append(errs, config.Problem{File: cfg.Path, Path: base + ".waf", Msg: err.Error()})
			} else {
				p.inspector = ins
			}
		}
		if sp.WAF != nil {
			p.wafSets = sp.WAF.RuleSets
		}
		e.policies[name] = p
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return e, nil
}

// Check compiles every policy of cfg, expressions included, without a WAF
// or counters; `moat check` calls it to report expression errors.
func Check(cfg *config.Config) error {
	_, err := New(cfg, Options{skipWAF: true, Counter: ratelimit.NewMemory(1)})
	return err
}

func compileRule(env *cel.Env, pos *positions, path string, rc *config.Rule) (*rule, config.Errors) {
	if rc == nil || rc.Priority == nil {
		return nil, config.Errors{{File: pos.file, Path: path, Msg: "rule has no priority"}}
	}
	var errs config.Errors
	bad := func(msg string, args ...any) {
		errs = append(errs, config.Problem{File: pos.file, Line: rc.Line, Path: path, Msg: fmt.Sprintf(msg, args...)})
	}
	r := &rule{priority: *rc.Priority, desc: rc.Description, preview: rc.Preview, expr: rc.Expr}
	a, err := config.ParseAction(rc.Action)
	if err != nil {
		bad("%v", err)
	}
	r.action = a
	if rc.Match != nil {
		for _, s := range rc.Match.SrcIPRanges {
			if s == "*" {
				r.anyIP = true
				continue
			}
			p, err := config.ParsePrefix(s)
			if err != nil {
				bad("%v", err)
				continue
			}
			r.prefixes = append(r.prefixes, p)
		}
		r.ips = newCIDRSet(r.prefixes)
		r.ips.all = r.anyIP
	}
	if strings.TrimSpace(rc.Expr) != "" {
		prg, xerrs := compileExpr(env, rc.Expr)
		for _, xe := range xerrs {
			line, col := pos.locate(rc.ExprLine, rc.ExprColumn, xe.line, xe.column)
			errs = append(errs, config.Problem{File: pos.file, Line: line, Column: col, Path: path + ".expr", Msg: xe.msg})
		}
		r.prg = prg
	} else if rc.Match == nil {
		bad("rule matches nothing: set match.src_ip_ranges, expr, or both")
	}
	if (a.Kind == config.ActionThrottle || a.Kind == config.ActionRateBasedBan) && rc.RateLimit == nil {
		bad("%s needs rate_limit", a.Kind)
	}
	if rl := rc.RateLimit; rl != nil {
		r.limit = &rateLimit{
			lim:    ratelimit.Limit{Count: int64(rl.Count), Interval: rl.Interval.D()},
			keys:   rl.Key,
			exceed: config.Action{Kind: config.ActionDeny, Status: http.StatusTooManyRequests},
		}
		if len(r.limit.keys) == 0 {
			r.limit.keys = []string{"ip"}
		}
		if rl.ExceedAction != "" {
			if ea, err := config.ParseAction(rl.ExceedAction); err != nil {
				bad("exceed_action: %v", err)
			} else {
				r.limit.exceed = ea
			}
		}
		if a.Kind == config.ActionRateBasedBan {
			r.limit.lim.BanDuration = rl.BanDuration.D()
			r.limit.lim.BanCount, r.limit.lim.BanInterval = r.limit.lim.Count, r.limit.lim.Interval
			if bt := rl.BanThreshold; bt != nil {
				r.limit.lim.BanCount, r.limit.lim.BanInterval = int64(bt.Count), bt.Interval.D()
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

// positions turns a position inside an expression into one in the file.
// For a plain or quoted scalar on one line the expression starts at the
// value's column (after the quote); a block scalar (| or >) starts on the
// next line, at its indentation.
type positions struct {
	file  string
	lines []string
	read  bool
}

func (p *positions) line(n int) string {
	if !p.read {
		p.read = true
		if data, err := os.ReadFile(p.file); err == nil && len(data) <= 4<<20 {
			p.lines = strings.Split(string(data), "\n")
		}
	}
	if n < 1 || n > len(p.lines) {
		return ""
	}
	return p.lines[n-1]
}

// locate maps CEL's (1-based line, 0-based column) to the file's 1-based
// line and column.
func (p *positions) locate(exprLine, exprCol, line, col int) (int, int) {
	if exprLine == 0 {
		return line, col + 1
	}
	text := p.line(exprLine)
	start := exprCol - 1 // 0-based index of the value's first character
	if start >= 0 && start < len(text) {
		switch text[start] {
		case '|', '>':
			l := exprLine + line
			t := p.line(l)
			indent := len(t) - len(strings.TrimLeft(t, " \t"))
			return l, indent + col + 1
		case '"', '\'':
			start++
		}
	}
	if line == 1 {
		return exprLine, start + col + 1
	}
	return exprLine + line - 1, col + 1
}

// Policy returns the compiled policy name, or nil.
func (e *Engine) Policy(name string) *Policy { return e.policies[name] }

// Counter returns the counter the engine uses.
func (e *Engine) Counter() ratelimit.Counter { return e.counter }

// Handler returns next behind the security policy named name: the route's
// security_policy, or "" for server.default_security_policy (and when that
// is unset too, next itself). An unknown name, which configuration loading
// rejects, fails closed: every request is refused with 403.
func (e *Engine) Handler(name string, next http.Handler) http.Handler {
	if name == "" {
		name = e.defaultPolicy
	}
	if name == "" {
		return next
	}
	p := e.policies[name]
	if p == nil {
		e.log.Error("unknown security policy; refusing every request", "policy", name)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			request.From(r).Decision = name + "/unknown:deny(403)"
			web.Error(w, r, http.StatusForbidden, "forbidden")
		})
	}
	return p.Handler(next)
}

// clientIP is the request's client address as the server resolved it, or
// the peer's when the request did not pass the server (as in tests).
func clientIP(r *http.Request, info *request.Info) netip.Addr {
	if info.ClientIP.IsValid() {
		return info.ClientIP.Unmap()
	}
	return clientip.PeerAddr(r.RemoteAddr)
}

func schemeOf(r *http.Request, info *request.Info) string {
	if info.Scheme != "" {
		return info.Scheme
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// logFailure logs a counter failure at most once a second.
func (e *Engine) logFailure(policy string, err error) {
	now := time.Now().UnixNano()
	last := e.lastFailLog.Load()
	if now-last < int64(time.Second) || !e.lastFailLog.CompareAndSwap(last, now) {
		return
	}
	mode := "open"
	if e.failClosed {
		mode = "closed"
	}
	e.log.Error("rate-limit counters unavailable", "policy", policy, "counters_fail", mode, "err", err)
}

// Admits is Policy.Admits for the policy name (server.
// default_security_policy when empty; no policy admits everyone, an
// unknown one nobody).
func (e *Engine) Admits(name string, r *http.Request) bool {
	if name == "" {
		name = e.defaultPolicy
	}
	if name == "" {
		return true
	}
	p := e.policies[name]
	return p != nil && p.Admits(r)
}
