package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/auth/oidc/oidctest"
)

// tenRules is the security policy of the signed-in route, shared with
// internal/server's BenchmarkFrontDoor.
//
//go:embed ten-rules.yaml
var tenRules string

// wafRuleSets are issue 13's WAF target: the same CRS categories on moat
// (Coraza, CRS 4) and on nginx (ModSecurity 3, Debian's CRS 3.3).
var wafRuleSets = []string{"sqli", "xss", "lfi", "rce", "scannerdetection", "protocolattack"}

// modsecFiles are the CRS 3.3 files of wafRuleSets, with the
// initialization and the blocking evaluation, as moat loads them.
var modsecFiles = []string{
	"REQUEST-901-INITIALIZATION.conf",
	"REQUEST-913-SCANNER-DETECTION.conf",
	"REQUEST-921-PROTOCOL-ATTACK.conf",
	"REQUEST-930-APPLICATION-ATTACK-LFI.conf",
	"REQUEST-932-APPLICATION-ATTACK-RCE.conf",
	"REQUEST-941-APPLICATION-ATTACK-XSS.conf",
	"REQUEST-942-APPLICATION-ATTACK-SQLI.conf",
	"REQUEST-949-BLOCKING-EVALUATION.conf",
}

// browserPath and browserHeaders are issue 13's browser-like request: a
// navigation with 12 headers (Host among them), 5 query arguments and 3
// cookies.
const browserPath = "/dashboard?tab=sales&region=emea&year=2024&page=2&sort=desc"

var browserHeaders = []string{
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8",
	"Accept-Language: en-US,en;q=0.9,ja;q=0.8",
	"Accept-Encoding: gzip, deflate, br, zstd",
	"Referer: https://app.example.com/dashboard?tab=overview",
	"Cookie: _streamlit_xsrf=2|9f1c2a7e|8d0b6f4c1e2a3b5c7d9e0f1a2b3c4d5e|1733356800; ajs_anonymous_id=5e1f7c3a-8b2d-4f6e-9a0c-1d2e3f4a5b6c; theme=dark",
	`Sec-Ch-Ua: "Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`,
	"Sec-Fetch-Dest: document",
	"Sec-Fetch-Mode: navigate",
	"Sec-Fetch-Site: same-origin",
	"Upgrade-Insecure-Requests: 1",
}

// lab is everything the harness runs: the backend and the peers in front
// of it, by name.
type lab struct {
	o       options
	backend string // address
	procs   map[string]*process
	addrs   map[string]string
	// moat's listeners beyond the plain HTTP one.
	moatHTTPS, moatInternal string
	nginxTLS                string
	// Cookie headers of signed-in sessions.
	moatCookie, oauth2Cookie string
}

func have(bin string) bool {
	if bin == "" {
		return false
	}
	_, err := exec.LookPath(bin)
	return err == nil
}

func startLab(o options) *lab {
	l := &lab{o: o, procs: map[string]*process{}, addrs: map[string]string{}}
	l.backend = freeAddr()
	self, _ := os.Executable()
	l.procs["direct"] = start("backend", nil, self, "backend", l.backend)
	l.addrs["direct"] = l.backend
	waitOK(l.procs["direct"], "http://"+l.backend+"/", nil)

	l.startMoat()
	addr := freeAddr()
	l.procs["httputil"] = start("httputil", nil, self, "httputil", addr, l.backend)
	l.addrs["httputil"] = addr
	waitOK(l.procs["httputil"], "http://"+addr+"/", nil)
	if have(o.bin["nginx"]) {
		l.startNginx("nginx", false)
		if _, err := os.Stat("/usr/share/nginx/modules/ngx_http_modsecurity_module.so"); err == nil {
			l.startNginx("nginx+modsec", true)
		} else {
			fmt.Println("  (no libnginx-mod-http-modsecurity: nginx + ModSecurity left out)")
		}
	} else {
		fmt.Println("  (no nginx: its targets are left out)")
	}
	if have(o.bin["haproxy"]) {
		l.startHAProxy()
	} else {
		fmt.Println("  (no haproxy: its targets are left out)")
	}
	if have(o.bin["caddy"]) {
		l.startCaddy()
	} else {
		fmt.Println("  (no caddy: its targets are left out)")
	}
	if have(o.bin["oauth2-proxy"]) {
		l.startOAuth2Proxy()
	} else {
		fmt.Println("  (no oauth2-proxy: its target is left out)")
	}
	return l
}

// moatConfig is moat's configuration for the bench: a public route, a
// signed-in route behind ten rules, a public route behind the WAF. It
// serves plain HTTP (http_mode: serve, as on Cloud Run) beside HTTPS.
func moatConfig(https, http, internal, dataDir, backend string, waf bool) string {
	cfg := fmt.Sprintf(`server:
  https_addr: %q
  http_addr: %q
  http_mode: serve
  internal_addr: %q
  log_level: warn
  max_conns_per_ip: 100000
data_dir: %q
tls: {self_signed: true}
backends:
  app: {url: "http://%s"}
routes:
  - {host: 127.0.0.1, backend: app, public: true}
  - {host: localhost, backend: app, login: [password], allow: ["group:staff"], security_policy: ten-rules}
`, https, http, internal, dataDir, backend)
	if waf {
		cfg += "  - {host: waf.test, backend: app, public: true, security_policy: waf}\n"
	}
	cfg += "security_policies:\n" + tenRules
	if waf {
		cfg += fmt.Sprintf(`  waf:
    rules:
      - {priority: 2147483647, match: {src_ip_ranges: ["*"]}, action: allow}
    waf: {rule_sets: [%s], paranoia: 1}
`, strings.Join(wafRuleSets, ", "))
	}
	return cfg
}

const benchUser, benchPassword = "bench@moat.test", "correct horse battery staple"

func (l *lab) startMoat() {
	httpAddr := freeAddr()
	l.moatHTTPS, l.moatInternal = freeAddr(), freeAddr()
	dataDir := filepath.Join(l.o.dir, "moat-data")
	cfg := filepath.Join(l.o.dir, "moat.yaml")
	writeFile(cfg, moatConfig(l.moatHTTPS, httpAddr, l.moatInternal, dataDir, l.backend, true))
	add := exec.Command(l.o.bin["moat"], "users", "add", benchUser, "--group", "staff", "--password-stdin", "-c", cfg)
	add.Stdin = strings.NewReader(benchPassword + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		fatalf("moat users add: %v\n%s", err, out)
	}
	p := start("moat", nil, l.o.bin["moat"], "serve", "-c", cfg)
	l.procs["moat"] = p
	l.addrs["moat"] = httpAddr
	waitOK(p, "http://"+httpAddr+"/", nil)
	l.moatCookie = l.moatSignIn(httpAddr)
	waitOK(p, "http://localhost:"+port(httpAddr)+"/", http.Header{"Cookie": {l.moatCookie}})
}

// loginForm opens moat's login page as a browser would and returns its
// CSRF token and the cookies it set (as name → value).
func loginForm(base string) (string, map[string]string) {
	req, _ := http.NewRequest(http.MethodGet, base+"/_moat/login?return_to=/", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fatalf("moat login page: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		fatalf("moat login page (%s) has no CSRF token", resp.Status)
	}
	cookies := map[string]string{}
	for _, c := range resp.Cookies() {
		cookies[c.Name] = c.Value
	}
	return string(m[1]), cookies
}

func cookieHeader(cookies map[string]string) string {
	var parts []string
	for k, v := range cookies {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, "; ")
}

// moatSignIn signs in through moat's login form as a browser would and
// returns the Cookie header of the session. moat's cookies are Secure, so
// they are carried by hand over plain HTTP.
func (l *lab) moatSignIn(addr string) string {
	base := "http://localhost:" + port(addr)
	token, cookies := loginForm(base)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"csrf": {token}, "email": {benchUser}, "password": {benchPassword}, "return_to": {"/"}}
	req, _ := http.NewRequest(http.MethodPost, base+"/_moat/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Cookie", cookieHeader(cookies))
	resp, err := client.Do(req)
	if err != nil {
		fatalf("moat login: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		fatalf("moat login answered %s, want 303:\n%.500s", resp.Status, body)
	}
	for _, c := range resp.Cookies() {
		cookies[c.Name] = c.Value
	}
	return cookieHeader(cookies)
}

// floodScript is the wrk script of the login flood, with a CSRF token and
// cookie from a fresh visit to the login page; navigate forges a browser's
// page navigation.
func (l *lab) floodScript(navigate bool) string {
	base := "http://localhost:" + port(l.addrs["moat"])
	token, cookies := loginForm(base)
	nav, name := "", "flood-tool.lua"
	if navigate {
		nav, name = navigateHeaders, "flood-browser.lua"
	}
	script := filepath.Join(l.o.dir, name)
	writeFile(script, strings.NewReplacer("TOKEN", url.QueryEscape(token), "ORIGIN", base,
		"COOKIE", cookieHeader(cookies), "NAVIGATE", nav).Replace(floodScript))
	return script
}

// startNginx runs nginx with two workers and upstream keep-alive, as a
// production proxy for WebSockets is set up; with modsec, ModSecurity 3
// runs Debian's CRS 3.3 (the same categories as moat's WAF target) in
// blocking mode at paranoia 1.
func (l *lab) startNginx(name string, modsec bool) {
	dir := filepath.Join(l.o.dir, name)
	os.MkdirAll(dir, 0o755)
	addr := freeAddr()
	var load, on, tls string
	if modsec {
		rules := filepath.Join(dir, "modsec.conf")
		var inc strings.Builder
		for _, f := range modsecFiles {
			fmt.Fprintf(&inc, "Include /usr/share/modsecurity-crs/rules/%s\n", f)
		}
		writeFile(rules, `SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 131072
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction ProcessPartial
SecResponseBodyAccess Off
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
Include /etc/modsecurity/crs/crs-setup.conf
SecAction "id:9001,phase:1,pass,nolog,t:none,setvar:tx.paranoia_level=1"
`+inc.String())
		load = "load_module /usr/share/nginx/modules/ngx_http_modsecurity_module.so;\n"
		on = "modsecurity on;\n    modsecurity_rules_file " + rules + ";\n"
	} else {
		l.nginxTLS = freeAddr()
		cert, key := selfSigned(dir)
		tls = fmt.Sprintf(`  server {
    listen %s ssl http2;
    ssl_certificate %s;
    ssl_certificate_key %s;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }
  }
`, l.nginxTLS, cert, key)
	}
	conf := filepath.Join(dir, "nginx.conf")
	writeFile(conf, fmt.Sprintf(`%suser root;
worker_processes 2;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  # nginx ends a connection after 1000 requests by default; h2load does not
  # reconnect, and a tuned proxy would not churn.
  keepalive_requests 1000000;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  upstream app { server %[3]s; keepalive 64; keepalive_requests 1000000; }
  map $http_upgrade $connection_upgrade { default upgrade; "" ""; }
  server {
    listen %[4]s;
    %[5]slocation / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 3600s;
    }
  }
%[6]s}
`, load, dir, l.backend, addr, on, tls))
	p := start(name, nil, l.o.bin["nginx"], "-e", filepath.Join(dir, "error.log"), "-c", conf)
	p.log = filepath.Join(dir, "error.log")
	l.procs[name] = p
	l.addrs[name] = addr
	waitOK(p, "http://"+addr+"/", nil)
}

// startHAProxy runs HAProxy with its default threads (one per core) and
// connection reuse to the backend.
func (l *lab) startHAProxy() {
	addr := freeAddr()
	conf := filepath.Join(l.o.dir, "haproxy.cfg")
	writeFile(conf, fmt.Sprintf(`global
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend fe
  bind %s
  default_backend be
backend be
  http-reuse always
  server app %s
`, addr, l.backend))
	p := start("haproxy", nil, l.o.bin["haproxy"], "-db", "-f", conf)
	l.procs["haproxy"] = p
	l.addrs["haproxy"] = addr
	waitOK(p, "http://"+addr+"/", nil)
}

func (l *lab) startCaddy() {
	addr := freeAddr()
	conf := filepath.Join(l.o.dir, "Caddyfile")
	writeFile(conf, fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
}
http://%s {
	bind 127.0.0.1
	reverse_proxy %s
}
`, addr, l.backend))
	p := start("caddy", []string{"XDG_DATA_HOME=" + l.o.dir, "XDG_CONFIG_HOME=" + l.o.dir}, l.o.bin["caddy"], "run", "--config", conf, "--adapter", "caddyfile")
	l.procs["caddy"] = p
	l.addrs["caddy"] = addr
	waitOK(p, "http://"+addr+"/", nil)
}

// startOAuth2Proxy runs oauth2-proxy against a real OpenID Provider
// (internal/auth/oidc/oidctest) and signs in through it, for a cookie
// session like moat's.
func (l *lab) startOAuth2Proxy() {
	op, err := oidctest.New()
	if err != nil {
		fatalf("oidc provider: %v", err)
	}
	addr := freeAddr()
	secret := make([]byte, 32)
	rand.Read(secret)
	p := start("oauth2-proxy", nil, l.o.bin["oauth2-proxy"],
		"--http-address=http://"+addr,
		"--upstream=http://"+l.backend+"/",
		"--provider=oidc",
		"--oidc-issuer-url="+op.Issuer,
		"--client-id="+oidctest.ClientID,
		"--client-secret="+oidctest.ClientSecret,
		"--cookie-secret="+base64.RawURLEncoding.EncodeToString(secret),
		"--cookie-secure=false",
		"--email-domain=*",
		"--redirect-url=http://"+addr+"/oauth2/callback",
		"--skip-provider-button=true",
		"--request-logging=false",
		"--auth-logging=false",
	)
	l.procs["oauth2-proxy"] = p
	l.addrs["oauth2-proxy"] = addr
	waitOK(p, "http://"+addr+"/ping", nil)

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get("http://" + addr + "/oauth2/start?rd=/")
	if err != nil || resp.StatusCode != http.StatusFound {
		fatalf("oauth2-proxy start: %v %v (log %s)", err, resp, p.log)
	}
	resp.Body.Close()
	callback, err := op.Login(context.Background(), resp.Header.Get("Location"), "alice@example.com", "correct horse battery") // a user of oidctest.Users
	if err != nil {
		fatalf("sign in at the provider: %v", err)
	}
	resp, err = client.Get(callback.String())
	if err != nil {
		fatalf("oauth2-proxy callback: %v", err)
	}
	resp.Body.Close()
	base, _ := url.Parse("http://" + addr + "/")
	var parts []string
	for _, c := range jar.Cookies(base) {
		if strings.HasPrefix(c.Name, "_oauth2_proxy") && !strings.Contains(c.Name, "csrf") {
			parts = append(parts, c.Name+"="+c.Value)
		}
	}
	if len(parts) == 0 {
		fatalf("oauth2-proxy set no session cookie (callback %s); log %s", resp.Status, p.log)
	}
	l.oauth2Cookie = strings.Join(parts, "; ")
	waitOK(p, "http://"+addr+"/", http.Header{"Cookie": {l.oauth2Cookie}})
}
