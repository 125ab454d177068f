// Package waf runs the OWASP Core Rule Set (CRS) through Coraza for the
// `waf:` block of a security policy (issue 5, point 5).
//
// A Firewall is built once per policy (at load or reload) and shared by all
// requests; each Inspect uses one Coraza transaction and closes it. The CRS
// runs in anomaly-scoring mode: detection rules of the enabled rule sets add
// to a score and REQUEST-949 blocks with 403 when it reaches 5.
//
// What is inspected, and what is not:
//   - the request line, headers, cookies and query, always;
//   - the request body up to body_limit (DefaultBodyLimit). Beyond it the
//     body is inspected partially and still passed on whole, never refused,
//     so large uploads keep working; the route's body limit bounds size;
//   - not responses: no response rule file is loaded;
//   - not WebSocket frames: only the upgrade request that opens the socket
//     passes through Inspect. Streamlit's protobuf messages travel in those
//     frames; its only HTTP bodies are st.file_uploader's multipart uploads.
package waf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/request"
)

// DefaultBodyLimit is how many request body bytes are inspected when
// `waf.body_limit` is not set.
//
// A longer body is not rejected: the first DefaultBodyLimit bytes are
// inspected (Coraza's ProcessPartial) and the whole body still goes to the
// app, so large uploads to Streamlit (`/_stcore/upload_file`, 200 MB by
// default) keep working. Request size itself is bounded by the route's body
// limit (issue 5, point 7), not by the WAF.
const DefaultBodyLimit = 128 << 10

// MaxBodyLimit bounds `waf.body_limit`: every inspected byte is held in
// memory for the duration of the inspection.
const MaxBodyLimit = 16 << 20

// Verdict is the outcome of inspecting one request.
type Verdict struct {
	// Blocked is true when the request must be refused with Status.
	// It is never true in preview mode.
	Blocked bool
	// WouldBlock is true when the rules decided to block, whether or not the
	// firewall enforces it; in preview mode it is what the policy engine
	// logs and counts.
	WouldBlock bool
	// Status is the HTTP status the rules chose (403 for CRS anomaly
	// blocking, 400 for an unparsable body), also in preview mode, or 0
	// when nothing would block.
	Status int
	// RuleIDs lists the rules that matched and log a message, in
	// evaluation order (detection rules, then 949110 when blocking).
	RuleIDs []int
	// Message is the message of the blocking rule, or of the last detection
	// rule when nothing blocked.
	Message string
}

// Firewall is a compiled CRS configuration. It is safe for concurrent use.
type Firewall struct {
	waf       coraza.WAF
	bodyLimit int64
	preview   bool
	// skip holds path prefixes for which the WAF is not run at all.
	skip []string
}

// New compiles cfg into a Firewall; it takes about a second for all rule
// sets, so a reload builds the new Firewall beside the old one. The rule set
// names are those of RuleSetNames; an empty list enables all of them.
// Paranoia 0 means 1 (Cloud Armor's sensitivity 0, "no rule", is not
// offered: leave `waf:` out instead). Exclusions are validated here; moat's
// built-in Streamlit exclusions (see builtinExclusions) are always added.
func New(cfg *config.WAF) (*Firewall, error) {
	return newFirewall(cfg, "")
}

// newFirewall is New with extra directives placed after the CRS setup and
// before the rules, where the CRS regression tests put their tuning.
func newFirewall(cfg *config.WAF, extra string) (*Firewall, error) {
	if cfg == nil {
		return nil, errors.New("waf: no configuration")
	}
	paranoia := cfg.Paranoia
	if paranoia == 0 {
		paranoia = 1
	}
	if paranoia < 1 || paranoia > 4 {
		return nil, fmt.Errorf("waf: paranoia %d: must be 1 to 4", cfg.Paranoia)
	}
	limit := cfg.BodyLimit
	if limit == 0 {
		limit = DefaultBodyLimit
	}
	if limit < 0 || limit > MaxBodyLimit {
		return nil, fmt.Errorf("waf: body_limit %d: must be 1 to %d bytes", cfg.BodyLimit, MaxBodyLimit)
	}
	files, err := ruleFiles(cfg.RuleSets)
	if err != nil {
		return nil, err
	}
	exclusions, err := exclusionRules(cfg.Exclusions)
	if err != nil {
		return nil, err
	}
	directives := engineDirectives(limit) +
		"Include @crs-setup.conf.example\n" +
		fmt.Sprintf("SecAction \"id:9001,phase:1,pass,nolog,t:none,setvar:tx.blocking_paranoia_level=%d\"\n", paranoia) +
		extra + builtinRules + exclusions.before
	for _, f := range files {
		directives += "Include @owasp_crs/" + f + "\n"
	}
	directives += exclusions.after
	w, err := coraza.NewWAF(coraza.NewWAFConfig().
		WithRootFS(coreruleset.FS).
		WithDirectives(directives))
	if err != nil {
		return nil, fmt.Errorf("waf: compile rules: %w", err)
	}
	return &Firewall{waf: w, bodyLimit: limit, preview: cfg.Preview, skip: exclusions.skip}, nil
}

// ruleFiles returns the CRS files for the named rule sets in CRS order,
// always with the initialization (901) and the anomaly-scoring blocking
// evaluation (949). REQUEST-905 is left out on purpose: its exceptions are
// for Apache's internal requests from 127.0.0.1, which behind moat would
// exempt every request that a local proxy forwards.
func ruleFiles(sets []string) ([]string, error) {
	if len(sets) == 0 {
		sets = RuleSetNames()
	}
	files := []string{"REQUEST-901-INITIALIZATION.conf", "REQUEST-949-BLOCKING-EVALUATION.conf"}
	for _, name := range sets {
		fs, ok := ruleSetFiles[name]
		if !ok {
			return nil, fmt.Errorf("waf: unknown rule set %q (known: %s)", name, strings.Join(RuleSetNames(), ", "))
		}
		for _, f := range fs {
			if !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
	}
	slices.Sort(files) // REQUEST-9NN names sort in evaluation order
	return files, nil
}

// engineDirectives configures Coraza itself: blocking mode, request body
// access up to limit with partial processing beyond it, no response body
// access, and the body processors of coraza.conf-recommended.
func engineDirectives(limit int64) string {
	return fmt.Sprintf(`SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit %d
SecRequestBodyInMemoryLimit %d
SecRequestBodyLimitAction ProcessPartial
SecRequestBodyJsonDepthLimit 1024
SecResponseBodyAccess Off
SecAuditEngine Off
SecRule REQUEST_HEADERS:Content-Type "@rx ^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/[a-z0-9.-]+[+]json" "id:200006,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body',chain"
  SecRule INBOUND_DATA_ERROR "!@eq 1" "t:none"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:200003,phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation',chain"
  SecRule INBOUND_DATA_ERROR "!@eq 1" "t:none"
`, limit, limit)
}

// Inspect evaluates r against the rules. It reads up to the body limit from
// r.Body and replaces r.Body with a reader over the bytes read followed by
// the rest, so the proxy can still send the whole body (r.ContentLength is
// unchanged). Reading the body waits for the client, so the server's read
// timeouts bound Inspect. An error means the request could not be
// inspected; the caller fails closed. A nil Firewall inspects nothing.
func (f *Firewall) Inspect(r *http.Request) (Verdict, error) {
	if f == nil || f.skipped(r.URL.Path) {
		return Verdict{}, nil
	}
	return f.inspect(r, nil)
}

// Preview reports whether the firewall only reports and never blocks.
func (f *Firewall) Preview() bool { return f != nil && f.preview }

// inspect runs one transaction. A non-nil matched receives every matched
// rule, including those that do not log (for the CRS regression runner).
func (f *Firewall) inspect(r *http.Request, matched *[]types.MatchedRule) (Verdict, error) {
	tx := f.waf.NewTransaction()
	defer tx.Close()

	client, port := clientAddr(r)
	tx.ProcessConnection(client, port, "", 0)
	// The request target as the client sent it, so that odd forms
	// (absolute-form without a path, encodings) reach the protocol rules.
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	tx.ProcessURI(uri, r.Method, r.Proto)
	for k, vs := range r.Header {
		for _, v := range vs {
			tx.AddRequestHeader(k, v)
		}
	}
	// net/http moves Host and Transfer-Encoding out of the header map.
	// An HTTP/1.1 request with an empty Host still had the header (net/http
	// refuses one without it); CRS tells empty (920290) from missing (920280).
	if r.Host != "" || r.ProtoAtLeast(1, 1) {
		tx.AddRequestHeader("Host", r.Host)
		tx.SetServerName(hostOnly(r.Host))
	}
	for _, te := range r.TransferEncoding {
		tx.AddRequestHeader("Transfer-Encoding", te)
	}

	it := tx.ProcessRequestHeaders()
	if it == nil && r.Body != nil && r.Body != http.NoBody && tx.IsRequestBodyAccessible() {
		var err error
		if it, err = f.readBody(tx, r); err != nil {
			return Verdict{}, err
		}
	}
	if it == nil {
		var err error
		if it, err = tx.ProcessRequestBody(); err != nil {
			return Verdict{}, fmt.Errorf("waf: process request body: %w", err)
		}
	}

	var v Verdict
	if matched != nil {
		*matched = slices.Clone(tx.MatchedRules()) // tx is pooled after Close
	}
	for _, mr := range tx.MatchedRules() {
		id := mr.Rule().ID()
		// 900000-901999 are the CRS's own setup and initialization.
		if mr.Message() != "" && (id < 900000 || id > 901999) {
			v.RuleIDs = append(v.RuleIDs, id)
			v.Message = mr.Message()
		}
	}
	if it != nil {
		v.WouldBlock = true
		v.Status = it.Status
		if v.Status == 0 {
			v.Status = http.StatusForbidden
		}
		if m := ruleMessage(tx.MatchedRules(), it.RuleID); m != "" {
			v.Message = m
		}
		v.Blocked = !f.preview
	}
	tx.ProcessLogging()
	return v, nil
}

// readBody feeds up to bodyLimit+1 bytes of r.Body to tx (one byte more so
// that Coraza knows the body was truncated) and restores r.Body.
func (f *Firewall) readBody(tx types.Transaction, r *http.Request) (*types.Interruption, error) {
	buf, err := io.ReadAll(io.LimitReader(r.Body, f.bodyLimit+1))
	r.Body = &restoredBody{Reader: io.MultiReader(bytes.NewReader(buf), r.Body), closer: r.Body}
	if err != nil {
		return nil, fmt.Errorf("waf: read request body: %w", err)
	}
	it, _, err := tx.WriteRequestBody(buf)
	if err != nil {
		return nil, fmt.Errorf("waf: buffer request body: %w", err)
	}
	return it, nil
}

// restoredBody replays the inspected bytes, then the unread rest of the
// original body, and closes the original.
type restoredBody struct {
	io.Reader
	closer io.Closer
}

func (b *restoredBody) Close() error { return b.closer.Close() }

// skipped reports whether path is under a prefix excluded from the WAF. A
// path with dot segments or repeated slashes is never skipped, so that
// `/static/../admin` cannot borrow an exclusion.
func (f *Firewall) skipped(p string) bool {
	if len(f.skip) == 0 || p == "" {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if clean != p {
		return false
	}
	for _, prefix := range f.skip {
		if underPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// underPrefix matches whole path segments: "/static" covers "/static" and
// "/static/js/x.js" but not "/staticfoo".
func underPrefix(p, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(p, prefix)
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

func ruleMessage(rules []types.MatchedRule, id int) string {
	for _, mr := range rules {
		if mr.Rule().ID() == id {
			return mr.Message()
		}
	}
	return ""
}

// clientAddr prefers the client address the server resolved through trusted
// proxies over the peer address.
func clientAddr(r *http.Request) (string, int) {
	host, portStr, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	port, _ := strconv.Atoi(portStr)
	if info, ok := request.FromContext(r.Context()); ok && info.ClientIP.IsValid() {
		host = info.ClientIP.String()
	}
	return host, port
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
