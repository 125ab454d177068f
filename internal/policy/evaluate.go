package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/moat-dev/moat/internal/bodylimit"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
	"github.com/moat-dev/moat/internal/tracing"
	"github.com/moat-dev/moat/internal/web"
)

// NoRule is Decision.Priority when no rule matched and the policy has no
// default rule, so the request was allowed (Cloud Armor's Terraform default).
const NoRule = -1

// Decision is what a policy decided for one request.
type Decision struct {
	Policy string
	// Priority of the deciding rule, or NoRule.
	Priority int64
	// Action is the rule's action kind (config.Action* constants), or
	// "waf" when the WAF refused the request.
	Action string
	// Allowed is true when the request goes on to next.
	Allowed bool
	// Status and Location describe the refusal: the HTTP status and, for a
	// redirect, its target.
	Status   int
	Location string
	// RetryAfter is set for a throttled or banned request.
	RetryAfter int64 // seconds
	// Reason explains the decision in a few words.
	Reason string
}

// String is the short form for the access log: policy/priority:outcome.
func (d Decision) String() string {
	return d.Policy + "/" + d.priorityLabel() + ":" + d.Outcome()
}

func (d Decision) priorityLabel() string {
	if d.Priority == NoRule {
		return "none"
	}
	return strconv.FormatInt(d.Priority, 10)
}

// Outcome is the action and its effect: allow, deny(403), redirect,
// throttle:allow, rate_based_ban:deny(429), waf:deny(403)…
func (d Decision) Outcome() string {
	out := "allow"
	switch {
	case d.Location != "":
		out = "redirect"
	case !d.Allowed:
		out = "deny(" + strconv.Itoa(d.Status) + ")"
	}
	switch d.Action {
	case config.ActionThrottle, config.ActionRateBasedBan, "waf":
		out = d.Action + ":" + out
	}
	return out
}

// step is one rule's evaluation, for explain.
type step struct {
	r       *rule
	matched bool
	why     string
	outcome string
}

// evaluation is the state of evaluating one request.
type evaluation struct {
	p     *Policy
	r     *http.Request
	info  *request.Info
	ip    netip.Addr
	act   *activation
	trace func(step) // nil outside explain
	// dryRun: explain, which must not count against rate limits.
	dryRun bool
}

// Handler returns next behind p. Refused requests get moat's error page
// (with the request id) or a redirect; every decision is logged, counted
// and noted in request.Info.Decision for the access log.
func (p *Policy) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := request.From(r)
		span := tracing.Start(r.Context(), "moat.policy")
		d, st := p.evaluate(r)
		d.trace(span)
		// The label is cached with the decision's counter: formatting it
		// per request was an allocation on every allowed request.
		info.Decision = st.label
		if d.Allowed {
			next.ServeHTTP(w, r)
			return
		}
		respond(w, r, d)
	})
}

func respond(w http.ResponseWriter, r *http.Request, d Decision) {
	if d.Location != "" {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, d.Location, http.StatusFound)
		return
	}
	if d.Status == request.StatusClientClosed {
		w.WriteHeader(d.Status) // for the access log; the client is gone
		return
	}
	if d.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(d.RetryAfter, 10))
	}
	web.Error(w, r, d.Status, statusKey(d.Status))
}

func statusKey(code int) string {
	switch code {
	case http.StatusNotFound:
		return "not_found"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusBadGateway:
		return "bad_gateway"
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusRequestEntityTooLarge:
		return "body_too_large"
	case http.StatusRequestTimeout:
		return "body_timeout"
	}
	return "forbidden"
}

// Evaluate runs p's rules (then its WAF, if the rules allow) against r and
// returns the decision, after logging and counting it and every preview
// match. It does not write a response.
func (p *Policy) Evaluate(r *http.Request) Decision {
	d, _ := p.evaluate(r)
	return d
}

// evaluate is Evaluate, also returning the decision's stats.
func (p *Policy) evaluate(r *http.Request) (Decision, *decisionStat) {
	info := request.From(r)
	ip := clientIP(r, info)
	ev := &evaluation{p: p, r: r, info: info, ip: ip, act: newActivation(r, ip, schemeOf(r, info))}
	d := ev.run()
	return d, p.record(info, ip, d, false)
}

func (ev *evaluation) run() Decision {
	p := ev.p
	for _, rl := range p.rules {
		matched, why := ev.match(rl)
		if !matched {
			ev.note(step{r: rl, why: why})
			continue
		}
		d := ev.apply(rl)
		if rl.preview {
			if !ev.dryRun {
				p.record(ev.info, ev.ip, d, true)
			}
			if ev.trace != nil {
				ev.note(step{r: rl, matched: true, why: why, outcome: "preview: would " + describe(d) + "; evaluation goes on"})
			}
			continue
		}
		if ev.trace != nil {
			ev.note(step{r: rl, matched: true, why: why, outcome: describe(d)})
		}
		if d.Allowed {
			return ev.inspect(d)
		}
		return d
	}
	return ev.inspect(Decision{Policy: p.name, Priority: NoRule, Action: config.ActionAllow, Allowed: true,
		Reason: "no rule matched and the policy has no default rule"})
}

func (ev *evaluation) note(s step) {
	if ev.trace != nil {
		ev.trace(s)
	}
}

// match reports whether rl matches and, when explaining, why in words.
func (ev *evaluation) match(rl *rule) (bool, string) {
	explain := ev.trace != nil
	var why []string
	if rl.ips != nil {
		if !rl.ips.contains(ev.ip) {
			if explain {
				return false, fmt.Sprintf("%s is not in src_ip_ranges", ev.ip)
			}
			return false, ""
		}
		if explain && rl.anyIP {
			why = append(why, "src_ip_ranges has *")
		} else if explain {
			why = append(why, fmt.Sprintf("%s is in %s", ev.ip, ev.whichPrefix(rl)))
		}
	}
	if rl.prg != nil {
		ok, err := rl.prg.eval(ev.act)
		if err != nil {
			if log := ev.p.e.log; log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("policy expression failed; the rule does not match",
					"policy", ev.p.name, "rule_priority", rl.priority, "request_id", ev.info.ID, "err", err)
			}
			if explain {
				return false, fmt.Sprintf("expr failed (%v), so the rule does not match", err)
			}
			return false, ""
		}
		if !ok {
			return false, "expr is false"
		}
		why = append(why, "expr is true")
	}
	return true, strings.Join(why, " and ")
}

func (ev *evaluation) whichPrefix(rl *rule) string {
	if ev.trace == nil {
		return "a listed range"
	}
	for _, p := range rl.prefixes {
		if p.Contains(ev.ip) || p.Addr().Is4In6() && p.Contains(netip.AddrFrom16(ev.ip.As16())) {
			return p.String()
		}
	}
	return "a listed range"
}

// apply computes the decision of a matching rule.
func (ev *evaluation) apply(rl *rule) Decision {
	d := Decision{Policy: ev.p.name, Priority: rl.priority, Action: rl.action.Kind}
	switch rl.action.Kind {
	case config.ActionAllow:
		d.Allowed, d.Reason = true, "allowed by rule"
	case config.ActionDeny:
		d.Status, d.Reason = rl.action.Status, "denied by rule"
	case config.ActionRedirect:
		d.Status, d.Location, d.Reason = http.StatusFound, rl.action.URL, "redirected by rule"
	case config.ActionThrottle, config.ActionRateBasedBan:
		ev.limit(rl, &d)
	default:
		d.Status, d.Reason = http.StatusForbidden, "unknown action" // unreachable: validated at load
	}
	return d
}

// limit applies a throttle or rate_based_ban rule: under the limit the
// request is allowed (Cloud Armor's conform action), over it (or banned) it
// gets the exceed action.
func (ev *evaluation) limit(rl *rule, d *Decision) {
	if ev.dryRun {
		d.Allowed, d.Reason = true, fmt.Sprintf("counted against %d per %s by %s (explain does not count: allowed while under the limit, then %s)",
			rl.limit.lim.Count, rl.limit.lim.Interval, strings.Join(rl.limit.keys, "+"), rl.limit.exceed)
		return
	}
	key := ev.limitKey(rl)
	res, err := ev.p.e.counter.Hit(ev.r.Context(), key, rl.limit.lim)
	if err != nil {
		e := ev.p.e
		e.logFailure(ev.p.name, err)
		if e.failClosed {
			counterFailures.WithLabelValues(ev.p.name, "closed").Inc()
			ev.exceed(rl, d, "counters unavailable and counters_fail is closed")
			return
		}
		counterFailures.WithLabelValues(ev.p.name, "open").Inc()
		d.Allowed, d.Reason = true, "counters unavailable and counters_fail is open"
		return
	}
	switch {
	case res.Banned:
		ev.exceed(rl, d, "banned")
		d.RetryAfter = max(1, int64(res.BanLeft.Seconds()+0.999))
	case res.Exceeded:
		ev.exceed(rl, d, fmt.Sprintf("over the rate limit (%d in %s)", res.Count, rl.limit.lim.Interval))
		d.RetryAfter = max(1, int64(rl.limit.lim.Interval.Seconds()))
	default:
		d.Allowed, d.Reason = true, "under the rate limit"
	}
}

func (ev *evaluation) exceed(rl *rule, d *Decision, reason string) {
	d.Reason = reason
	switch a := rl.limit.exceed; a.Kind {
	case config.ActionRedirect:
		d.Status, d.Location = http.StatusFound, a.URL
	default:
		d.Status = a.Status
	}
}

// limitKey names what a rate limit counts: the policy, the rule, and the
// rule's key values, length-prefixed so that parts cannot run together,
// and hashed when long so that a key's size is bounded whatever the request
// sends (short keys, such as an address, skip the hash: it was a third of
// the policy's cost per request). A missing value (no such header, cookie or
// user) counts as empty, which is Cloud Armor's fallback to ALL for that part.
func (ev *evaluation) limitKey(rl *rule) string {
	var arr [maxRawKey + 64]byte
	b := append(arr[:0], ev.p.name...)
	b = append(b, '/')
	b = strconv.AppendInt(b, rl.priority, 10)
	b = append(b, "/r"...)
	prefix := len(b)
	for _, k := range rl.limit.keys {
		if k == "ip" {
			// Appended in place: the address is the common key, and
			// formatting it apart cost an allocation per request.
			var ipArr [64]byte
			ip := ev.ip.AppendTo(ipArr[:0])
			b = strconv.AppendInt(b, int64(len(ip)), 10)
			b = append(b, ':')
			b = append(b, ip...)
			continue
		}
		var v string
		switch {
		case k == "all":
		case k == "path":
			v = ev.act.cleanPath()
		case k == "user":
			v = ev.info.User.Email
		case strings.HasPrefix(k, "header:"):
			v = strings.Join(ev.r.Header.Values(strings.TrimPrefix(k, "header:")), ",")
		case strings.HasPrefix(k, "cookie:"):
			if c, err := ev.r.Cookie(strings.TrimPrefix(k, "cookie:")); err == nil {
				v = c.Value
			}
		}
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	if len(b)-prefix <= maxRawKey {
		return string(b)
	}
	sum := sha256.Sum256(b[prefix:])
	b = append(b[:prefix-1], 'h')
	return string(hex.AppendEncode(b, sum[:16]))
}

// maxRawKey is the longest rate-limit key part kept as it is.
const maxRawKey = 64

// inspect runs the policy's WAF on a request the rules allowed.
func (ev *evaluation) inspect(d Decision) Decision {
	ins := ev.p.inspector
	if ins == nil || ev.dryRun {
		return d
	}
	v, err := ins.Inspect(ev.r)
	if err != nil {
		// A body cut for its size or pace is the client's doing: 413 or
		// 408, as the proxy would answer, not a WAF failure.
		if status, _, ok := bodylimit.Status(err); ok {
			return Decision{Policy: ev.p.name, Priority: d.Priority, Action: "waf", Status: status, Reason: err.Error()}
		}
		if errors.Is(err, context.Canceled) {
			return Decision{Policy: ev.p.name, Priority: d.Priority, Action: "waf", Status: request.StatusClientClosed, Reason: "client went away during inspection"}
		}
		ev.p.e.log.Error("waf inspection failed; request refused", "policy", ev.p.name, "request_id", ev.info.ID, "err", err)
		return Decision{Policy: ev.p.name, Priority: d.Priority, Action: "waf", Status: http.StatusForbidden, Reason: "waf failed: " + err.Error()}
	}
	if v.WouldBlock && !v.Blocked {
		wd := Decision{Policy: ev.p.name, Priority: d.Priority, Action: "waf", Status: orStatus(v.Status), Reason: wafReason(v)}
		ev.p.record(ev.info, ev.ip, wd, true)
	}
	if v.Blocked {
		return Decision{Policy: ev.p.name, Priority: d.Priority, Action: "waf", Status: orStatus(v.Status), Reason: wafReason(v)}
	}
	return d
}

func orStatus(s int) int {
	if s == 0 {
		return http.StatusForbidden
	}
	return s
}

func wafReason(v WAFVerdict) string {
	ids := make([]string, len(v.RuleIDs))
	for i, id := range v.RuleIDs {
		ids[i] = strconv.Itoa(id)
	}
	return "waf rules " + strings.Join(ids, ",") + ": " + v.Message
}

// describe says what a decision does, for explain and previews.
func describe(d Decision) string {
	switch {
	case d.Location != "":
		return "redirect to " + d.Location + " (" + d.Reason + ")"
	case d.Allowed:
		return "allow (" + d.Reason + ")"
	}
	return fmt.Sprintf("refuse with %d (%s)", d.Status, d.Reason)
}

// record logs and counts a decision, and returns its stats.
func (p *Policy) record(info *request.Info, ip netip.Addr, d Decision, preview bool) *decisionStat {
	st := p.decisionStats(d, preview)
	st.counter.Inc()
	level := slog.LevelInfo
	if d.Allowed && !preview {
		level = slog.LevelDebug
	}
	log := p.e.log
	if !log.Enabled(context.Background(), level) {
		return st
	}
	prio, outcome := d.priorityLabel(), d.Outcome()
	routeName := ""
	if info.Route != nil {
		routeName = info.Route.Name()
	}
	log.LogAttrs(context.Background(), level, "security policy decision",
		slog.String("policy", p.name),
		slog.String("rule_priority", prio),
		slog.String("action", outcome),
		slog.Bool("allowed", d.Allowed),
		slog.Int("status", d.Status),
		slog.Bool("preview", preview),
		slog.String("reason", d.Reason),
		slog.String("client_ip", ip.String()),
		slog.String("request_id", info.ID),
		slog.String("route", routeName),
	)
	return st
}

// counterKey is what the decisions counter's labels are made of, without
// building the label strings on every request.
type counterKey struct {
	priority int64
	action   string
	status   int
	allowed  bool
	redirect bool
	preview  bool
}

// decisionStat is the counter of one kind of decision and its label for
// the access log (Decision.String).
type decisionStat struct {
	counter prometheus.Counter
	label   string
}

// decisionCache maps the kinds of decision a policy made to their stats. A
// typed map behind a read lock: sync.Map hashed its keys through an
// interface, a measurable part of the policy's cost per request.
type decisionCache struct {
	mu sync.RWMutex
	m  map[counterKey]*decisionStat
}

// decisionStats returns the counter and label for d, cached per policy.
func (p *Policy) decisionStats(d Decision, preview bool) *decisionStat {
	k := counterKey{d.Priority, d.Action, d.Status, d.Allowed, d.Location != "", preview}
	c := &p.stats
	c.mu.RLock()
	st := c.m[k]
	c.mu.RUnlock()
	if st != nil {
		return st
	}
	st = &decisionStat{
		counter: decisions.WithLabelValues(p.name, d.priorityLabel(), d.Outcome(), strconv.FormatBool(preview)),
		label:   d.String(),
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[counterKey]*decisionStat)
	}
	c.m[k] = st
	c.mu.Unlock()
	return st
}

// Admits reports, in a dry run, whether p's rules let r through: nothing
// is counted or logged and the WAF is not run (a throttle rule answers as
// under its limit). The server uses it to pick the route whose policy a
// sign-in page headed nowhere in particular runs under.
func (p *Policy) Admits(r *http.Request) bool {
	info := request.From(r)
	ip := clientIP(r, info)
	ev := &evaluation{p: p, r: r, info: info, ip: ip, act: newActivation(r, ip, schemeOf(r, info)), dryRun: true}
	return ev.run().Allowed
}
