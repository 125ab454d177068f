package gcpimport

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// out is the moat configuration being built, with the comments that go
// with each part.
type out struct {
	tls      tlsOut
	backends []*backendOut
	sso      bool
	policies []*policyOut
	routes   []*routeOut
	todo     []string
	env      []string
}

type tlsOut struct {
	acme     bool
	domains  []string
	comments []string
}

type backendOut struct {
	name     string
	url      string
	comments []string
	source   *resource // the Cloud Run service, NEG or backend service
}

type routeOut struct {
	host, prefix, backend string
	public                bool
	login, allow          []string
	policy                string
	comments              []string
}

// Resource types by role.
var (
	urlMapTypes         = []string{"google_compute_url_map", "google_compute_region_url_map"}
	backendServiceTypes = []string{"google_compute_backend_service", "google_compute_region_backend_service"}
	policyTypes         = []string{"google_compute_security_policy", "google_compute_region_security_policy"}
	certTypes           = []string{"google_compute_managed_ssl_certificate", "google_certificate_manager_certificate"}
)

// translator carries one translation.
type translator struct {
	m        *module
	opts     Options
	c        *out
	backends map[*resource]*backendOut
	policies map[*resource]*policyOut
	routed   map[string]bool // host + " " + prefix
}

func translate(m *module, opts Options) (*out, error) {
	t := &translator{m: m, opts: opts, c: &out{}, backends: map[*resource]*backendOut{}, policies: map[*resource]*policyOut{}, routed: map[string]bool{}}
	maps := m.ofType(urlMapTypes...)
	if len(maps) == 0 {
		return nil, fmt.Errorf("%s has no google_compute_url_map: moat import gcp reads the Terraform of an HTTPS load balancer", m.dir)
	}
	var errs Errors
	domains := t.certificates()
	for _, um := range maps {
		errs = append(errs, t.urlMap(um, domains)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if len(t.c.routes) == 0 {
		return nil, Errors{{File: maps[0].decl.Filename, Line: maps[0].decl.Start.Line, Msg: "the URL map routes no host that could be read: give the certificate's domains or host_rule hosts values"}}
	}
	// Policies no backend service uses come along, so nothing is lost.
	for _, p := range m.ofType(policyTypes...) {
		if t.policies[p] == nil {
			po := t.policy(p)
			po.comments = append(po.comments, "No backend service used this policy in Terraform; name it in a route's security_policy to apply it.")
		}
	}
	t.tlsFor(domains)
	t.fates()
	if t.c.sso {
		t.c.env = append(t.c.env, "GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET")
		var hosts []string
		for _, r := range t.c.routes {
			if slices.Contains(r.login, "google") && !slices.Contains(hosts, r.host) {
				hosts = append(hosts, r.host)
			}
		}
		callbacks := make([]string, len(hosts))
		for i, h := range hosts {
			callbacks[i] = "https://" + h + "/_moat/oidc/callback"
		}
		t.c.todo = append([]string{fmt.Sprintf("create an OAuth client (Google Cloud console → APIs & Services → Credentials → Web application) with the redirect URI %s, and export GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET", strings.Join(callbacks, " and "))}, t.c.todo...)
	}
	var hosts []string
	for _, r := range t.c.routes {
		if !slices.Contains(hosts, r.host) {
			hosts = append(hosts, r.host)
		}
	}
	t.c.todo = append(t.c.todo, fmt.Sprintf("point the DNS records of %s at this machine (they pointed at the load balancer's addresses)", strings.Join(hosts, ", ")))
	return t.c, nil
}

// certificates returns the domains of the managed certificates.
func (t *translator) certificates() []string {
	var domains []string
	for _, r := range t.m.ofType(certTypes...) {
		managed := block(r.body, "managed")
		if managed == nil {
			r.fate = "nothing: not a managed certificate; moat gets its own from Let's Encrypt (tls.acme) or reads tls.cert_file and tls.key_file"
			continue
		}
		ds, ok := t.m.listAttr(managed, "domains")
		if !ok {
			r.fate = "nothing: " + t.m.unknown(managed, "domains")
			continue
		}
		for _, d := range ds {
			d = strings.ToLower(strings.TrimSuffix(d, "."))
			if !slices.Contains(domains, d) {
				domains = append(domains, d)
			}
		}
		r.fate = "tls.acme: " + strings.Join(ds, ", ")
	}
	return domains
}

// urlMap makes routes of a URL map: each host rule's hosts go to its path
// matcher's services, and the certificate's other domains to the default
// service (that is how the seed's SSO host was served).
func (t *translator) urlMap(um *resource, domains []string) Errors {
	um.fate = "routes"
	var errs Errors
	matchers := map[string]*hclsyntax.Body{}
	for _, b := range blocks(um.body, "path_matcher") {
		if name, ok := t.m.stringAttr(b.Body, "name"); ok {
			matchers[name] = b.Body
		}
	}
	ruled := map[string]bool{}
	for _, hr := range blocks(um.body, "host_rule") {
		hosts, ok := t.m.listAttr(hr.Body, "hosts")
		if !ok {
			errs = append(errs, Problem{File: hr.DefRange().Filename, Line: hr.DefRange().Start.Line, Msg: "host_rule: " + t.m.unknown(hr.Body, "hosts")})
			continue
		}
		name, _ := t.m.stringAttr(hr.Body, "path_matcher")
		pm := matchers[name]
		if pm == nil {
			errs = append(errs, Problem{File: hr.DefRange().Filename, Line: hr.DefRange().Start.Line, Msg: fmt.Sprintf("host_rule names path_matcher %q, which the URL map does not define", name)})
			continue
		}
		for _, h := range hosts {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			if h == "*" {
				continue // every other host: the default service's below
			}
			ruled[h] = true
			t.pathMatcher(um, h, pm)
		}
	}
	if um.body.Attributes["default_service"] == nil {
		if block(um.body, "default_url_redirect") != nil {
			t.c.todo = append(t.c.todo, fmt.Sprintf("%s redirects other hosts (default_url_redirect); moat answers them with its 404 page", um.addr()))
		}
		return errs
	}
	var rest []string
	for _, d := range domains {
		if !ruled[d] {
			rest = append(rest, d)
		}
	}
	if len(rest) == 0 {
		t.c.todo = append(t.c.todo, fmt.Sprintf("%s sends every other host to its default_service; moat routes only hosts it is told: add a route for each such host", um.addr()))
		return errs
	}
	for _, h := range rest {
		t.service(um, h, "", um.body, "default_service", fmt.Sprintf("The certificate's domain %s is in no host_rule of %s, so its default_service served it.", h, um.addr()))
	}
	return errs
}

// pathMatcher routes host through one path matcher.
func (t *translator) pathMatcher(um *resource, host string, pm *hclsyntax.Body) {
	if pm.Attributes["default_service"] != nil {
		t.service(um, host, "", pm, "default_service", "")
	}
	for _, pr := range blocks(pm, "path_rule") {
		paths, ok := t.m.listAttr(pr.Body, "paths")
		if !ok {
			continue
		}
		for _, p := range paths {
			prefix, note := pathPrefix(p)
			if prefix == "" && note == "" {
				continue // "/*" is the whole host: the default service's
			}
			if pr.Body.Attributes["service"] == nil {
				t.c.todo = append(t.c.todo, fmt.Sprintf("%s: the path rule for %s%s redirects or rewrites (url_redirect, route_action); moat has no equivalent: handle it in the app", um.addr(), host, p))
				continue
			}
			t.service(um, host, prefix, pr.Body, "service", note)
		}
	}
	for range blocks(pm, "route_rules") {
		t.c.todo = append(t.c.todo, fmt.Sprintf("%s: route_rules for %s (header matches, weighted services, rewrites) have no moat equivalent; routes match host and path prefix only", um.addr(), host))
		break
	}
}

// pathPrefix turns a URL map path ("/api/*" or an exact "/login") into a
// route's path_prefix, with a note when the meaning widens.
func pathPrefix(p string) (prefix, note string) {
	switch {
	case p == "/*" || p == "/":
		return "", ""
	case strings.HasSuffix(p, "/*") && !strings.Contains(strings.TrimSuffix(p, "/*"), "*"):
		return strings.TrimSuffix(p, "*"), ""
	case strings.Contains(p, "*"):
		return strings.ReplaceAll(p[:strings.Index(p, "*")], "//", "/"), fmt.Sprintf("The path rule %s had a wildcard inside; moat matches the prefix before it.", p)
	}
	return p, fmt.Sprintf("Google matched the path %s exactly; moat matches it as a prefix (so %s/… too).", p, strings.TrimSuffix(p, "/"))
}

// service adds the route for host+prefix to the backend service named by
// body's attribute attr.
func (t *translator) service(um *resource, host, prefix string, body *hclsyntax.Body, attr, note string) {
	key := host + " " + prefix
	if t.routed[key] {
		return
	}
	bs := t.m.ref(body, attr)
	if bs == nil || !contains(backendServiceTypes, bs.typ) {
		what := "a backend that is not in this Terraform"
		if bs != nil {
			what = bs.addr() + ", which moat cannot serve (a bucket or another kind of backend)"
			bs.fate = "nothing: serve these files from the app, or from a web server moat routes to"
		}
		t.c.todo = append(t.c.todo, fmt.Sprintf("%s sends %s%s to %s: add a backend and a route for it by hand", um.addr(), host, orSlash(prefix), what))
		return
	}
	t.routed[key] = true
	r := &routeOut{host: host, prefix: prefix, backend: t.backend(bs)}
	r.comments = append(r.comments, "From "+bs.addr()+".")
	if note != "" {
		r.comments = append(r.comments, note)
	}
	if secs, ok := t.m.numberAttr(bs.body, "timeout_sec"); ok {
		r.comments = append(r.comments, fmt.Sprintf("timeout_sec = %d there also cut every WebSocket after %d s (Streamlit's session lives on one); moat puts no cap on them.", secs, secs))
	}
	t.access(bs, r)
	t.securityPolicy(bs, r)
	for _, a := range []struct{ attr, what string }{
		{"enable_cdn", "Cloud CDN has no moat equivalent; cache in the app (st.cache_data) or put a CDN in front of moat."},
		{"session_affinity", "session_affinity: moat proxies each browser's WebSocket to the one app it runs next to; with several app replicas behind one moat, keep them sticky yourself."},
		{"custom_request_headers", "custom_request_headers are not sent: moat sends X-Moat-User-* and X-Moat-Assertion (and X-Goog-* with identity.iap_compatible_headers)."},
		{"edge_security_policy", "edge_security_policy: fold its rules into the route's security_policy."},
	} {
		if _, ok := bs.body.Attributes[a.attr]; ok {
			if v, ok := t.m.boolAttr(bs.body, a.attr); ok && !v {
				continue
			}
			r.comments = append(r.comments, a.what)
		}
	}
	if block(bs.body, "cdn_policy") != nil && !slices.ContainsFunc(r.comments, func(s string) bool { return strings.HasPrefix(s, "Cloud CDN") }) {
		r.comments = append(r.comments, "Cloud CDN has no moat equivalent; cache in the app (st.cache_data) or put a CDN in front of moat.")
	}
	if bs.fate == "" {
		bs.fate = "routes[].backend " + r.backend
	}
	t.c.routes = append(t.c.routes, r)
}

func orSlash(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// backend returns the moat backend for a backend service: the Cloud Run
// service behind its serverless NEG, on loopback (one per service).
func (t *translator) backend(bs *resource) string {
	src, name, port, note := t.origin(bs)
	if b := t.backends[src]; b != nil {
		return b.name
	}
	b := &backendOut{name: uniqueName(sanitize(name), func(n string) bool {
		return slices.ContainsFunc(t.c.backends, func(b *backendOut) bool { return b.name == n })
	}), source: src}
	b.url = "http://127.0.0.1:" + strconv.Itoa(port)
	if t.opts.AppURL != "" {
		b.url = t.opts.AppURL
	}
	b.comments = append(b.comments, note)
	if src.fate == "" {
		src.fate = "backends." + b.name
	}
	t.backends[src] = b
	t.c.backends = append(t.c.backends, b)
	return b.name
}

// origin follows a backend service to what serves it: the Cloud Run
// service of a serverless NEG, or the backend service itself.
func (t *translator) origin(bs *resource) (src *resource, name string, port int, note string) {
	for _, b := range blocks(bs.body, "backend") {
		neg := t.m.ref(b.Body, "group")
		if neg == nil {
			continue
		}
		cr := block(neg.body, "cloud_run")
		if cr == nil {
			neg.fate = "nothing: run moat on those machines in front of the app, or point the backend's url at them"
			return neg, nameOf(neg), 8080, fmt.Sprintf("%s served this; run moat beside the app, or set url to where it listens.", neg.addr())
		}
		neg.fate = "folded into the backend it reaches"
		svc, ok := t.m.stringAttr(cr, "service")
		run := t.m.ref(cr, "service")
		if run == nil {
			run = neg
		}
		if !ok {
			svc = nameOf(run)
		}
		port, how := t.containerPort(run)
		return run, svc, port, fmt.Sprintf("The Cloud Run service %s (%s), run next to moat on loopback so moat is its only way in: %s. moat run -- CMD or command: [...] here starts it with moat.", svc, run.addr(), how)
	}
	return bs, nameOf(bs), 8080, fmt.Sprintf("%s had no backend moat can follow; set url to where the app listens.", bs.addr())
}

func nameOf(r *resource) string {
	if r.gcpID != "" {
		return r.gcpID
	}
	return r.name
}

// deployPort finds `gcloud run deploy … --port N` in a script.
var deployPort = regexp.MustCompile(`gcloud\s+(?:beta\s+)?run\s+deploy(?:[^\n]|\\\n)*?--port[= ](\d+)`)

// containerPort is the port the Cloud Run service's container listened on:
// from its Terraform, else from the deploy script a local-exec provisioner
// runs, else Cloud Run's default 8080.
func (t *translator) containerPort(run *resource) (int, string) {
	for _, path := range [][]string{{"template", "spec", "containers", "ports"}, {"template", "containers", "ports"}} {
		body := run.body
		for _, p := range path {
			if body = block(body, p); body == nil {
				break
			}
		}
		if body != nil {
			if n, ok := t.m.numberAttr(body, "container_port"); ok {
				return int(n), fmt.Sprintf("its container_port %d", n)
			}
		}
	}
	for _, r := range t.m.resources {
		for _, pb := range blocks(r.body, "provisioner") {
			cmd, ok := t.m.stringAttr(pb.Body, "command")
			if !ok {
				continue
			}
			for _, word := range strings.Fields(cmd) {
				script := filepath.Join(t.m.dir, filepath.Clean("/" + word)[1:])
				if !strings.HasSuffix(word, ".sh") {
					continue
				}
				src, err := readBounded(script)
				if err != nil {
					continue
				}
				if m := deployPort.FindSubmatch(src); m != nil {
					n, _ := strconv.Atoi(string(m[1]))
					return n, fmt.Sprintf("%s deployed it with --port %d", filepath.Base(script), n)
				}
			}
		}
	}
	return 8080, "Cloud Run's default port 8080; set the port your app listens on (Streamlit: 8501)"
}

var nameUnsafe = regexp.MustCompile(`[^a-z0-9_-]+`)

// sanitize makes a moat name (lower-case letters, digits, - and _).
func sanitize(s string) string {
	s = strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(s), "-"), "-_")
	if s == "" {
		return "app"
	}
	return s
}

func uniqueName(base string, taken func(string) bool) string {
	name := base
	for i := 2; taken(name); i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name
}

// access sets who may use the route: IAP with IAM members becomes Google
// sign-in with their allow list; IAP without members in Terraform was
// Identity Platform's email/password (external identities) on the seed,
// so it becomes moat's own password sign-in; no IAP makes it public.
func (t *translator) access(bs *resource, r *routeOut) {
	iap := block(bs.body, "iap")
	if iap != nil {
		if on, ok := t.m.boolAttr(iap, "enabled"); ok && !on {
			iap = nil
		}
	}
	if iap == nil {
		r.public = true
		r.comments = append(r.comments, "No IAP on this backend service: anyone who reached the load balancer got in, so the route is public. To protect it, remove public and add login and allow.")
		return
	}
	members, notes := t.members(bs)
	r.comments = append(r.comments, notes...)
	if len(members) > 0 {
		t.c.sso = true
		r.login, r.allow = []string{"google"}, members
		return
	}
	group := sanitize(bs.name)
	r.login, r.allow = []string{"password"}, []string{"group:" + group}
	r.comments = append(r.comments, fmt.Sprintf("IAP here had no IAM members in Terraform: it signed people in with Identity Platform's email and password (external identities, set up in the console). moat's own password sign-in takes its place; only members of the group %s may enter.", group))
	t.c.todo = append(t.c.todo, fmt.Sprintf("bring the Identity Platform users of %s over with their passwords: firebase auth:export users.json --format=json, then moat users import users.json --format firebase --group %s --hash-key … --salt-separator … --rounds … --mem-cost … (the project's password hash parameters)", r.host, group))
}

// accessorRole is the role that lets a member through IAP.
const accessorRole = "roles/iap.httpsResourceAccessor"

// members collects the IAP accessors of a backend service from IAM
// bindings, members and policies on it (and on all of IAP), translated to
// allow-list members, with notes on those moat cannot take.
func (t *translator) members(bs *resource) (allow, notes []string) {
	add := func(r *resource, role string, ms []string, body *hclsyntax.Body) {
		if role != accessorRole {
			notes = append(notes, fmt.Sprintf("%s grants %s, not %s; it gives no access through moat.", r.addr(), role, accessorRole))
			if r.fate == "" {
				r.fate = "nothing: " + role + " opens no web page through IAP"
			}
			return
		}
		if body != nil && block(body, "condition") != nil {
			notes = append(notes, fmt.Sprintf("%s has an IAM condition, which moat cannot express; its members are allowed unconditionally here: narrow them with a security policy or routes[].max_age.", r.addr()))
		}
		for _, m := range ms {
			a, note := member(m)
			if a != "" && !slices.Contains(allow, a) {
				allow = append(allow, a)
			}
			if note != "" {
				notes = append(notes, note)
			}
		}
		r.fate = "routes[].allow"
	}
	for _, r := range t.m.resources {
		if r.mode != "resource" {
			continue
		}
		scoped := strings.HasPrefix(r.typ, "google_iap_web_backend_service_iam_")
		global := strings.HasPrefix(r.typ, "google_iap_web_iam_")
		if !scoped && !global {
			continue
		}
		if scoped && t.m.ref(r.body, "web_backend_service") != bs {
			continue
		}
		role, _ := t.m.stringAttr(r.body, "role")
		switch {
		case strings.HasSuffix(r.typ, "_iam_binding"):
			ms, ok := t.m.listAttr(r.body, "members")
			if !ok {
				notes = append(notes, fmt.Sprintf("%s: %s", r.addr(), t.m.unknown(r.body, "members")))
				continue
			}
			add(r, role, ms, r.body)
		case strings.HasSuffix(r.typ, "_iam_member"):
			mb, ok := t.m.stringAttr(r.body, "member")
			if !ok {
				notes = append(notes, fmt.Sprintf("%s: %s", r.addr(), t.m.unknown(r.body, "member")))
				continue
			}
			add(r, role, []string{mb}, r.body)
		case strings.HasSuffix(r.typ, "_iam_policy"):
			pd := t.m.ref(r.body, "policy_data")
			if pd == nil || pd.typ != "google_iam_policy" {
				notes = append(notes, fmt.Sprintf("%s: its policy_data is not a data.google_iam_policy in this Terraform; copy its %s members into allow by hand.", r.addr(), accessorRole))
				continue
			}
			r.fate = "routes[].allow"
			pd.fate = "routes[].allow"
			for _, b := range blocks(pd.body, "binding") {
				role, _ := t.m.stringAttr(b.Body, "role")
				ms, _ := t.m.listAttr(b.Body, "members")
				add(pd, role, ms, b.Body)
			}
		}
	}
	return allow, notes
}

// member translates an IAM member into an allow-list member, or says why
// it cannot be one.
func member(m string) (allow, note string) {
	kind, value, _ := strings.Cut(m, ":")
	switch kind {
	case "user":
		return "user:" + strings.ToLower(value), ""
	case "domain":
		return "domain:" + strings.ToLower(value), ""
	case "group":
		return "group:" + strings.ToLower(value), fmt.Sprintf("moat does not read Google Groups: group:%s names a moat group of that name; fill it with moat users set-groups, or from the SSO provider's groups_claim.", value)
	case "serviceAccount":
		return "", fmt.Sprintf("%s is a service account: give the program a personal access token (moat tokens create) on a route with bearer: true instead.", m)
	case "allUsers":
		return "", "allUsers let everyone through IAP; moat keeps sign-in on this route (set public: true, without login and allow, if that is what you want)."
	case "allAuthenticatedUsers":
		return "", "allAuthenticatedUsers let any Google account through; moat has no such member: list the domain: or user: members who should enter."
	case "deleted":
		return "", fmt.Sprintf("%s is a deleted principal; left out.", m)
	}
	return "", fmt.Sprintf("%s is not a member moat understands (user:, domain:, group:); left out.", m)
}

// securityPolicy names the route's security policy.
func (t *translator) securityPolicy(bs *resource, r *routeOut) {
	if bs.body.Attributes["security_policy"] == nil {
		return
	}
	p := t.m.ref(bs.body, "security_policy")
	if p == nil || !contains(policyTypes, p.typ) {
		r.comments = append(r.comments, "Its security_policy is not in this Terraform: write its rules under security_policies and name it here.")
		return
	}
	r.policy = t.policy(p).name
}

// tlsFor chooses how moat gets certificates.
func (t *translator) tlsFor(domains []string) {
	wildcard := slices.ContainsFunc(t.c.routes, func(r *routeOut) bool { return strings.HasPrefix(r.host, "*.") })
	if wildcard {
		t.c.tls.comments = append(t.c.tls.comments, "A route's host is a wildcard, for which ACME HTTP-01 cannot issue a certificate: moat serves a self-signed one until you set cert_file and key_file.")
		return
	}
	t.c.tls.acme = true
	t.c.tls.domains = domains
	routed := map[string]bool{}
	for _, r := range t.c.routes {
		routed[r.host] = true
	}
	for _, d := range domains {
		if !routed[d] {
			t.c.tls.comments = append(t.c.tls.comments, fmt.Sprintf("The certificate also named %s, which no route serves; moat gets certificates for routed hosts only.", d))
		}
	}
}

// fates gives every resource moat did not use a word on what to do
// instead, for the file's header.
func (t *translator) fates() {
	why := map[string]string{
		"google_compute_global_forwarding_rule":        "server.https_addr (moat listens on :443 itself)",
		"google_compute_forwarding_rule":               "server.https_addr (moat listens on :443 itself)",
		"google_compute_target_https_proxy":            "server.https_addr and tls",
		"google_compute_region_target_https_proxy":     "server.https_addr and tls",
		"google_compute_target_http_proxy":             "server.http_addr (redirects to HTTPS)",
		"google_compute_global_address":                "nothing: point the hosts' DNS at the machine moat runs on",
		"google_compute_address":                       "nothing: point the hosts' DNS at the machine moat runs on",
		"google_compute_region_network_endpoint_group": "nothing: moat reaches the app on loopback",
		"google_compute_network_endpoint_group":        "nothing: moat reaches the app on loopback",
		"google_iap_client":                            "identity.sso.google (an OAuth client you create; see below)",
		"google_iap_brand":                             "nothing: the consent screen of the OAuth client you create",
		"google_artifact_registry_repository":          "nothing: moat needs no image registry; run the app next to moat",
		"google_project_service":                       "nothing: moat needs no Google API",
		"google_project_service_identity":              "nothing: moat needs no IAP service account",
		"google_compute_ssl_policy":                    "nothing: moat serves TLS 1.2+ with Go's safe defaults",
		"google_cloud_run_service_iam_member":          "nothing: only moat reaches the app, on loopback",
		"google_cloud_run_service_iam_binding":         "nothing: only moat reaches the app, on loopback",
		"google_cloud_run_v2_service_iam_member":       "nothing: only moat reaches the app, on loopback",
		"google_identity_platform_config":              "moat's own users (login: [password]); moat users import brings them over",
		"google_identity_platform_tenant":              "moat's own users (login: [password]); moat users import brings them over",
		"google_cloud_run_service":                     "nothing: run the app next to moat",
		"google_cloud_run_v2_service":                  "nothing: run the app next to moat",
		"google_compute_health_check":                  "backends.NAME.health_path",
	}
	for _, r := range t.m.resources {
		if r.fate != "" {
			continue
		}
		if w, ok := why[r.typ]; ok {
			r.fate = w
			continue
		}
		r.fate = "nothing: no moat equivalent; review it by hand"
	}
	for _, p := range t.m.providers {
		p.fate = "nothing: moat needs no cloud credentials"
	}
}

// report lists the variables' values and each resource's fate, for the
// file's header.
func (m *module) report() (vars, fates []string) {
	names := make([]string, 0, len(m.vars))
	for n := range m.vars {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := m.vars[n]
		val := "(no value)"
		if v.value.IsWhollyKnown() && !v.value.IsNull() {
			val = showValue(v.value)
		}
		from := ""
		if v.from != "" && v.from != "default" {
			from = " (" + v.from + ")"
		}
		vars = append(vars, fmt.Sprintf("%s = %s%s", n, val, from))
	}
	all := append(append([]*resource{}, m.providers...), m.resources...)
	width := 0
	for _, r := range all {
		width = max(width, len(r.addr()))
	}
	for _, r := range all {
		fates = append(fates, fmt.Sprintf("%-*s  %s", width, r.addr(), r.fate))
	}
	return vars, fates
}
