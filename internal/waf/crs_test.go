package waf

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"text/template"
	"time"

	crstests "github.com/corazawaf/coraza-coreruleset/v4/tests"
	"github.com/corazawaf/coraza/v3/types"
	"gopkg.in/yaml.v3"

	"github.com/moat-dev/moat/internal/config"
)

// The CRS regression suite (go-ftw YAML, embedded by coraza-coreruleset at
// the same version as the rules) replayed against moat's Firewall. Each
// stage is written as raw bytes to a real net/http server whose handler runs
// Inspect, so requests reach the WAF exactly as they would behind moat —
// including the ones net/http refuses before any handler runs.

// crsTestTuning is the CRS test suite's own setup (coreruleset tests,
// mirrored by coraza's testing/coreruleset): detection only, so that every
// rule is evaluated, with the limits the tests are written against.
const crsTestTuning = `SecAction "id:900005,phase:1,nolog,pass,t:none,ctl:ruleEngine=DetectionOnly,ctl:ruleRemoveById=910000,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535"
`

// crsFloor is the minimum pass rate per rule set (of the cases run, skips
// excluded), set a little under what was measured so a regression fails.
var crsFloor = map[string]float64{
	"methodenforcement":   1.00,
	"scannerdetection":    1.00,
	"blocking":            1.00,
	"protocolenforcement": 0.97,
	"protocolattack":      0.97,
	"lfi":                 0.97,
	"rfi":                 0.97,
	"rce":                 0.98,
	"php":                 0.98,
	"nodejs":              0.98,
	"xss":                 0.98,
	"sqli":                0.98,
	"sessionfixation":     0.97,
	"java":                0.98,
}

// crsKnownDifferences are cases whose expectation holds for Apache httpd
// only; each is skipped with its reason and counted.
var crsKnownDifferences = map[string]string{
	"920290-4": "net/http does not tell an empty Host from a missing one in HTTP/1.0, so 920280 fires instead of 920290",
	"920620-1": "httpd merges repeated headers; net/http keeps both, so 920620 rightly fires",
}

// Known differences, each skipped with a counted reason. A case skipped for
// any other reason would hide a failure, so the list is closed.
const (
	skipResponse = "response rules: moat does not inspect responses"
	skipRejected = "net/http refuses the request before the WAF (moat answers 4xx)"
	skipNoAssert = "asserts nothing that a WAF decides"
	skipStatus   = "asserts only a status that Apache, not net/http, returns"
	// Coraza's multipart parser refuses what ModSecurity's logs as a
	// parsing error; moat then answers 400 (rule 200002).
	skipBodyError = "expects ModSecurity's multipart parsing message; Coraza fails the body and 200002 refuses it with 400"
)

type ftwFile struct {
	RuleID int       `yaml:"rule_id"`
	Tests  []ftwTest `yaml:"tests"`
}

type ftwTest struct {
	TestID int        `yaml:"test_id"`
	Desc   string     `yaml:"desc"`
	Stages []ftwStage `yaml:"stages"`
}

type ftwStage struct {
	Input  ftwInput  `yaml:"input"`
	Output ftwOutput `yaml:"output"`
}

type ftwInput struct {
	Method              *string           `yaml:"method"`
	URI                 *string           `yaml:"uri"`
	Version             *string           `yaml:"version"`
	Headers             map[string]string `yaml:"headers"`
	Data                *string           `yaml:"data"`
	EncodedRequest      string            `yaml:"encoded_request"`
	AutocompleteHeaders *bool             `yaml:"autocomplete_headers"`
}

type ftwOutput struct {
	Status      int  `yaml:"status"`
	ExpectError bool `yaml:"expect_error"`
	Log         struct {
		ExpectIDs    []int  `yaml:"expect_ids"`
		NoExpectIDs  []int  `yaml:"no_expect_ids"`
		MatchRegex   string `yaml:"match_regex"`
		NoMatchRegex string `yaml:"no_match_regex"`
	} `yaml:"log"`
}

// raw renders the stage as go-ftw sends it: defaults GET, /, HTTP/1.1, and
// with autocomplete_headers (the default) Content-Length and Connection.
func (in ftwInput) raw() ([]byte, error) {
	if in.EncodedRequest != "" {
		return base64.StdEncoding.DecodeString(strings.ReplaceAll(in.EncodedRequest, "\n", ""))
	}
	data := ""
	if in.Data != nil {
		data = expandData(*in.Data)
	}
	method, uri, version := "GET", "/", "HTTP/1.1"
	if in.Method != nil {
		method = *in.Method
	}
	if in.URI != nil {
		uri = *in.URI
	}
	if in.Version != nil {
		version = *in.Version
	}
	var b strings.Builder
	b.WriteString(method + " " + uri)
	if version != "" {
		b.WriteString(" " + version)
	}
	b.WriteString("\r\n")
	has := func(name string) bool {
		for k := range in.Headers {
			if strings.EqualFold(k, name) {
				return true
			}
		}
		return false
	}
	names := make([]string, 0, len(in.Headers))
	for k := range in.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b.WriteString(k + ": " + in.Headers[k] + "\r\n")
	}
	if in.AutocompleteHeaders == nil || *in.AutocompleteHeaders {
		if data != "" && !has("Content-Length") && !has("Transfer-Encoding") {
			fmt.Fprintf(&b, "Content-Length: %d\r\n", len(data))
		}
		if !has("Connection") {
			b.WriteString("Connection: close\r\n")
		}
	}
	b.WriteString("\r\n" + data)
	return []byte(b.String()), nil
}

// expandData applies go-ftw's templating to data; the suite uses only
// sprig's `repeat`.
func expandData(data string) string {
	if !strings.Contains(data, "{{") {
		return data
	}
	tmpl, err := template.New("data").Funcs(template.FuncMap{
		"repeat": func(n int, s string) string { return strings.Repeat(s, n) },
	}).Parse(data)
	if err != nil {
		return data
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, nil); err != nil {
		return data
	}
	return b.String()
}

// crsServer runs Inspect for each request with the firewall registered for
// the client's address and keeps the matched rules for the runner, so that
// several stages can be replayed at once.
type crsServer struct {
	mu      sync.Mutex
	route   map[string]*Firewall
	matched map[string][]types.MatchedRule
}

func (s *crsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.route[r.RemoteAddr]
	s.mu.Unlock()
	if f == nil {
		w.WriteHeader(http.StatusMisdirectedRequest)
		return
	}
	var matched []types.MatchedRule
	v, err := f.inspect(r, &matched)
	s.mu.Lock()
	s.matched[r.RemoteAddr] = matched
	s.mu.Unlock()
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	switch {
	case err != nil:
		w.WriteHeader(http.StatusInternalServerError)
	case v.Blocked:
		w.WriteHeader(v.Status)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// send writes raw to the server for f and returns the response status (0
// when the connection failed or closed without a response), the matched
// rules, and whether the request reached the handler at all.
func (s *crsServer) send(addr string, f *Firewall, raw []byte) (int, []types.MatchedRule, bool) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, nil, false
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	s.mu.Lock()
	s.route[local] = f
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.route, local)
		delete(s.matched, local)
		s.mu.Unlock()
	}()
	status := 0
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(raw); err == nil {
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
	}
	s.mu.Lock()
	matched, called := s.matched[local]
	s.mu.Unlock()
	return status, matched, called
}

type crsTally struct {
	run, passed int
	skipped     map[string][]string // reason → case names
	failed      []string
}

type crsCase struct {
	name, set string
	test      ftwTest
}

func TestCRSRegressionSuitePassRatePerRuleSet(t *testing.T) {
	// Each file runs against a firewall with only its own rule set enabled
	// (the blocking evaluation tests against all of them), as a policy that
	// enables that set would; it also keeps the suite fast.
	fws := map[string]*Firewall{}
	firewallFor := func(set string) *Firewall {
		if fws[set] == nil {
			cfg := &config.WAF{Paranoia: 4, BodyLimit: 1 << 20}
			if set != "blocking" {
				cfg.RuleSets = []string{set}
			}
			f, err := newFirewall(cfg, crsTestTuning)
			if err != nil {
				t.Fatalf("firewall for %s: %v", set, err)
			}
			re2Queue.pending.Wait() // every case on RE2's fast path, as in steady state
			fws[set] = f
		}
		return fws[set]
	}
	s := &crsServer{route: map[string]*Firewall{}, matched: map[string][]types.MatchedRule{}}
	srv := httptest.NewUnstartedServer(s)
	srv.Config.ReadTimeout = 5 * time.Second
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	tallies := map[string]*crsTally{}
	var cases []crsCase
	files, err := fs.Glob(crstests.FS, "*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRS test files in coraza-coreruleset/v4/tests (err %v)", err)
	}
	for _, file := range files {
		dir := path.Dir(file)
		set := ruleSetOf(dir)
		switch {
		case strings.HasPrefix(dir, "REQUEST-949"):
			set = "blocking"
		case strings.HasPrefix(dir, "RESPONSE-"):
			set = "response"
		}
		if set == "" {
			t.Fatalf("%s: no rule set for %s", file, dir)
		}
		if tallies[set] == nil {
			tallies[set] = &crsTally{skipped: map[string][]string{}}
		}
		data, err := fs.ReadFile(crstests.FS, file)
		if err != nil {
			t.Fatal(err)
		}
		var ff ftwFile
		if err := yaml.Unmarshal(data, &ff); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, tc := range ff.Tests {
			name := fmt.Sprintf("%d-%d", ff.RuleID, tc.TestID)
			switch {
			case set == "response":
				tallies[set].skipped[skipResponse] = append(tallies[set].skipped[skipResponse], name)
			case crsKnownDifferences[name] != "":
				tallies[set].skipped[crsKnownDifferences[name]] = append(tallies[set].skipped[crsKnownDifferences[name]], name)
			case testing.Short() && len(cases)%4 != 0:
				// -short replays a quarter of the suite (every fourth case);
				// the floors still apply.
				cases = append(cases, crsCase{})
			default:
				firewallFor(set)
				cases = append(cases, crsCase{name, set, tc})
			}
		}
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan crsCase)
	for range 4 {
		wg.Go(func() {
			for c := range work {
				outcome, reason := runCRSCase(s, addr, fws[c.set], c.test)
				mu.Lock()
				tally := tallies[c.set]
				switch outcome {
				case "pass":
					tally.run++
					tally.passed++
				case "skip":
					tally.skipped[reason] = append(tally.skipped[reason], c.name)
				default:
					tally.run++
					tally.failed = append(tally.failed, c.name+": "+reason)
				}
				mu.Unlock()
			}
		})
	}
	for _, c := range cases {
		if c.set != "" {
			work <- c
		}
	}
	close(work)
	wg.Wait()

	logCRSTable(t, tallies)
	for set, floor := range crsFloor {
		tally := tallies[set]
		if tally == nil || tally.run == 0 {
			t.Errorf("%s: no cases run", set)
			continue
		}
		if rate := float64(tally.passed) / float64(tally.run); rate < floor {
			t.Errorf("%s: pass rate %.3f under the floor %.2f; failures:\n%s", set, rate, floor, strings.Join(tally.failed, "\n"))
		}
	}
}

// runCRSCase replays every stage of tc; it returns "pass", "fail" or "skip"
// with a reason.
func runCRSCase(s *crsServer, addr string, f *Firewall, tc ftwTest) (string, string) {
	for i, st := range tc.Stages {
		out := st.Output
		statusOnly := false
		if len(out.Log.ExpectIDs) == 0 && len(out.Log.NoExpectIDs) == 0 {
			switch {
			case out.Log.MatchRegex != "" || out.Log.NoMatchRegex != "":
				// Checked below against Coraza's ModSecurity-style
				// error log lines of the matched rules.
			case out.Status != 0:
				statusOnly = true
			case !out.ExpectError:
				return "skip", skipNoAssert
			}
		}
		raw, err := st.Input.raw()
		if err != nil {
			return "fail", fmt.Sprintf("stage %d: %v", i, err)
		}
		status, matched, called := s.send(addr, f, raw)
		if statusOnly {
			// The suite runs in detection mode, so only a status that
			// net/http itself chose (400, 505…) can be compared.
			if status == out.Status {
				continue
			}
			return "skip", skipStatus
		}
		if !called {
			// The request never reached a handler: net/http answered
			// 4xx/5xx itself or dropped the connection. That is moat's
			// behaviour too, so it is a known difference, not a failure.
			return "skip", skipRejected
		}
		var ids []int
		var logs []string
		for _, mr := range matched {
			ids = append(ids, mr.Rule().ID())
			logs = append(logs, mr.ErrorLog())
		}
		log := strings.Join(logs, "\n")
		if re := out.Log.MatchRegex; re != "" {
			if ok, err := regexp.MatchString(re, log); err != nil || !ok {
				if slices.Contains(ids, 200002) {
					return "skip", skipBodyError
				}
				return "fail", fmt.Sprintf("stage %d: no log line matches %q (err %v)", i, re, err)
			}
		}
		if re := out.Log.NoMatchRegex; re != "" {
			if ok, err := regexp.MatchString(re, log); err != nil || ok {
				return "fail", fmt.Sprintf("stage %d: a log line matches %q (err %v)", i, re, err)
			}
		}
		for _, id := range out.Log.ExpectIDs {
			if !slices.Contains(ids, id) {
				return "fail", fmt.Sprintf("stage %d: %d did not match (status %d)", i, id, status)
			}
		}
		for _, id := range out.Log.NoExpectIDs {
			if slices.Contains(ids, id) {
				return "fail", fmt.Sprintf("stage %d: %d matched but must not", i, id)
			}
		}
	}
	return "pass", ""
}

func logCRSTable(t *testing.T, tallies map[string]*crsTally) {
	t.Helper()
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "rule set\trun\tpassed\tpass rate\tskipped\t\n")
	sets := make([]string, 0, len(tallies))
	for set := range tallies {
		sets = append(sets, set)
	}
	sort.Strings(sets)
	reasons := map[string][]string{}
	var run, passed int
	for _, set := range sets {
		tl := tallies[set]
		skipped := 0
		for r, names := range tl.skipped {
			skipped += len(names)
			reasons[r] = append(reasons[r], names...)
		}
		rate := "-"
		if tl.run > 0 {
			rate = fmt.Sprintf("%.1f%%", 100*float64(tl.passed)/float64(tl.run))
		}
		run += tl.run
		passed += tl.passed
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t\n", set, tl.run, tl.passed, rate, skipped)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%.1f%%\t\t\n", run, passed, 100*float64(passed)/float64(max(run, 1)))
	tw.Flush()
	b.WriteString("skipped (known differences):\n")
	for _, r := range slices.Sorted(maps.Keys(reasons)) {
		names := reasons[r]
		slices.Sort(names)
		list := strings.Join(names, " ")
		if r == skipResponse {
			list = "RESPONSE-950…980"
		}
		fmt.Fprintf(&b, "  %4d  %s: %s\n", len(names), r, list)
	}
	b.WriteString("failures:\n")
	for _, set := range sets {
		for _, f := range tallies[set].failed {
			fmt.Fprintf(&b, "  %s: %s\n", set, f)
		}
	}
	scope := "the whole suite"
	if testing.Short() {
		scope = "every fourth case (-short)"
	}
	t.Logf("OWASP CRS %s regression suite against moat's WAF (paranoia 4, each file against its rule set), %s:\n%s", CRSVersion, scope, b.String())
}
