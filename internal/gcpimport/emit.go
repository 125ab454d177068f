package gcpimport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/moat-dev/moat/internal/config"
)

// writer builds the YAML text: values are written as JSON strings (valid
// YAML double-quoted scalars), comments wrapped at about 100 columns.
type writer struct{ b bytes.Buffer }

func (w *writer) line(indent int, format string, args ...any) {
	w.b.WriteString(strings.Repeat(" ", indent))
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

// comment writes text as # lines at indent, wrapped.
func (w *writer) comment(indent int, text string) {
	const width = 100
	prefix := strings.Repeat(" ", indent) + "# "
	next := prefix
	if strings.HasPrefix(text, "- ") {
		next += "  " // a list item's continuation lines hang under its text
	}
	line, fresh := prefix, true
	for _, word := range strings.Fields(text) {
		if !fresh && len(line)+1+len(word) > width {
			w.b.WriteString(line + "\n")
			line, fresh = next, true
		}
		if !fresh {
			line += " "
		}
		line, fresh = line+word, false
	}
	w.b.WriteString(line + "\n")
}

// q quotes s for YAML.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// list writes a flow list of quoted strings.
func list(items []string) string {
	qs := make([]string, len(items))
	for i, s := range items {
		qs[i] = q(s)
	}
	return "[" + strings.Join(qs, ", ") + "]"
}

// emit writes the configuration, its header first: where it came from,
// the variables' values, what became of every Terraform item, and what to
// do before serving.
func (c *out) emit(m *module) []byte {
	w := &writer{}
	names := make([]string, len(m.files))
	for i, f := range m.files {
		names[i] = filepath.Base(f)
	}
	w.comment(0, fmt.Sprintf("Written by `moat import gcp` from the Terraform in %s (%s).", m.dir, strings.Join(names, ", ")))
	w.line(0, "#")
	vars, fates := m.report()
	if len(vars) > 0 {
		w.line(0, "# Terraform variables:")
		for _, v := range vars {
			w.line(0, "#   %s", v)
		}
		w.line(0, "#")
	}
	w.line(0, "# What became of each Terraform item:")
	for _, f := range fates {
		w.line(0, "#   %s", f)
	}
	w.line(0, "#")
	w.line(0, "# Before `moat serve -c FILE` (check it first with `moat check -c FILE`):")
	for _, t := range c.todo {
		w.comment(0, "- "+t)
	}
	w.line(0, "")

	w.line(0, "server:")
	w.line(2, "https_addr: %s  # the forwarding rules' port 443", q(":443"))
	w.line(2, "http_addr: %s    # redirects to HTTPS and answers ACME challenges", q(":80"))
	w.line(0, "data_dir: %s", q(config.DefaultDataDir))
	w.line(0, "tls:")
	for _, s := range c.tls.comments {
		w.comment(2, s)
	}
	if c.tls.acme {
		w.comment(2, "Let's Encrypt certificates for every routed host, as the managed certificate had ("+strings.Join(c.tls.domains, ", ")+"). Add email: you@example.com for expiry notices.")
		w.line(2, "acme: {}")
	} else {
		w.line(2, "self_signed: true")
	}

	w.line(0, "backends:")
	for _, b := range c.backends {
		w.line(2, "%s:", b.name)
		for _, s := range b.comments {
			w.comment(4, s)
		}
		w.line(4, "url: %s", q(b.url))
	}

	if c.sso {
		w.line(0, "identity:")
		w.line(2, "sso:")
		w.comment(4, "Google sign-in in place of IAP: an OAuth client of your own (see the list at the top).")
		w.line(4, "google:")
		w.line(6, "issuer: %s", q("https://accounts.google.com"))
		w.line(6, "client_id: %s", q("${GOOGLE_CLIENT_ID}"))
		w.line(6, "client_secret: %s", q("${GOOGLE_CLIENT_SECRET}"))
	}

	if len(c.policies) > 0 {
		w.line(0, "security_policies:")
	}
	for _, p := range c.policies {
		w.line(2, "%s:", p.name)
		for _, s := range p.comments {
			w.comment(4, s)
		}
		if p.desc != "" {
			w.line(4, "description: %s", q(p.desc))
		}
		w.line(4, "rules:")
		for _, r := range p.rules {
			r.emit(w)
		}
		if p.waf != nil {
			w.line(4, "waf:")
			w.line(6, "rule_sets: [%s]", strings.Join(p.waf.sets, ", "))
			w.line(6, "paranoia: %d", max(1, p.waf.paranoia))
			if p.waf.preview {
				w.line(6, "preview: true")
			}
		}
	}

	w.line(0, "routes:")
	for _, r := range c.routes {
		w.line(2, "- host: %s", q(r.host))
		for _, s := range r.comments {
			w.comment(4, s)
		}
		if r.prefix != "" {
			w.line(4, "path_prefix: %s", q(r.prefix))
		}
		w.line(4, "backend: %s", r.backend)
		if r.public {
			w.line(4, "public: true")
		} else {
			w.line(4, "login: [%s]", strings.Join(r.login, ", "))
			w.line(4, "allow: %s", list(r.allow))
		}
		if r.policy != "" {
			w.line(4, "security_policy: %s", r.policy)
		}
	}
	return w.b.Bytes()
}

// emit writes one rule, or the comment that stands for a rule moat cannot
// express.
func (r *ruleOut) emit(w *writer) {
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	add("priority: %d", r.priority)
	if r.desc != "" {
		add("description: %s", q(r.desc))
	}
	if len(r.srcIPs) > 0 {
		add("match: {src_ip_ranges: %s}", list(r.srcIPs))
	}
	if r.expr != "" {
		add("expr: %s", q(r.expr))
	}
	add("action: %s", q(r.action))
	if r.rate != nil {
		rl := r.rate
		s := fmt.Sprintf("rate_limit: {count: %d, interval: %s, key: %s", rl.count, duration(rl.interval), list(rl.key))
		if rl.exceed != "" {
			s += ", exceed_action: " + q(rl.exceed)
		}
		if rl.hasBan {
			s += ", ban_duration: " + duration(rl.banDuration)
		}
		if rl.hasThreshold {
			s += fmt.Sprintf(", ban_threshold: {count: %d, interval: %s}", rl.banCount, duration(rl.banInterval))
		}
		add("%s}", s)
	}
	if r.preview {
		add("preview: true")
	}
	for _, s := range r.comments {
		w.comment(6, s)
	}
	if r.dropped != "" {
		w.comment(6, fmt.Sprintf("Left out: %s. The rule was:", r.dropped))
		for i, l := range lines {
			lead := "  "
			if i == 0 {
				lead = "- "
			}
			w.line(6, "#   %s%s", lead, l)
		}
		return
	}
	for i, l := range lines {
		lead := "  "
		if i == 0 {
			lead = "- "
		}
		w.line(6, "%s%s", lead, l)
	}
}

// duration writes d as moat does: whole days, hours, minutes or seconds.
func duration(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// showValue writes a variable's value for the header.
func showValue(v cty.Value) string {
	if v.Type() == cty.String {
		return q(v.AsString())
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return v.GoString()
	}
	return string(b)
}
