package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"text/template"
	"time"

	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testtool"
)

// The ingresses moat is tested behind in forward_auth mode: the real nginx
// (Debian's, auth_request built in) and the real Caddy (forward_auth), each
// configured as the README's forward-auth section shows.

// ingress is a running nginx or Caddy in front of moat and an app.
type ingress struct {
	// Name is "nginx" or "caddy".
	Name string
	// URL is its HTTPS origin, https://localhost:PORT.
	URL  string
	Addr string
	proc *child
	logs *testlog.Buffer
}

// ingressSetup is what an ingress's configuration names.
type ingressSetup struct {
	Dir, Cert, Key string
	// Listen is the ingress's 127.0.0.1:PORT, Moat moat's HTTPS host:port,
	// App the app's HTTP host:port.
	Listen, Port, Moat, App string
	// Root: nginx runs as root, and its workers must write their temporary
	// files into Dir.
	Root bool
}

// nginxConf is the README's nginx configuration, with paths for a test.
var nginxConf = template.Must(template.New("nginx").Parse(`daemon off;
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log info;
{{if .Root}}user root;{{end}}
events { worker_connections 512; }
http {
  access_log {{.Dir}}/access.log;
  client_body_temp_path {{.Dir}}/tmp-body;
  proxy_temp_path {{.Dir}}/tmp-proxy;
  fastcgi_temp_path {{.Dir}}/tmp-fastcgi;
  uwsgi_temp_path {{.Dir}}/tmp-uwsgi;
  scgi_temp_path {{.Dir}}/tmp-scgi;

  map $http_upgrade $connection_upgrade { default upgrade; "" close; }

  server {
    listen {{.Listen}} ssl;
    ssl_certificate {{.Cert}};
    ssl_certificate_key {{.Key}};

    # moat's own pages: sign-in, sign-out, account, console, JWKS. The
    # X-Forwarded-* headers name this very request, so that a client
    # asking /_moat/auth itself names nothing else.
    location /_moat/ {
      proxy_pass https://{{.Moat}};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Method $request_method;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Uri $request_uri;
    }

    # The auth request: only nginx itself reaches it (internal), and it
    # names the request it asks about in all four X-Forwarded-* headers.
    location = /_moat/auth/nginx {
      internal;
      proxy_pass https://{{.Moat}};
      proxy_http_version 1.1;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Method $request_method;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Uri $request_uri;
    }

    location / {
      auth_request /_moat/auth/nginx;
      auth_request_set $moat_email $upstream_http_x_moat_user_email;
      auth_request_set $moat_id $upstream_http_x_moat_user_id;
      auth_request_set $moat_groups $upstream_http_x_moat_user_groups;
      auth_request_set $moat_assertion $upstream_http_x_moat_assertion;
      auth_request_set $moat_cookie $upstream_http_x_moat_cookie;
      auth_request_set $moat_location $upstream_http_location;
      error_page 401 = @moat_signin;

      proxy_pass http://{{.App}};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      # moat's answer replaces whatever the client sent under these names;
      # an empty value sends none.
      proxy_set_header X-Moat-User-Email $moat_email;
      proxy_set_header X-Moat-User-Id $moat_id;
      proxy_set_header X-Moat-User-Groups $moat_groups;
      proxy_set_header X-Moat-Assertion $moat_assertion;
      proxy_set_header Cookie $moat_cookie;
      proxy_read_timeout 1h;
    }

    # 401 from moat: a person's page navigation goes to the login page
    # moat named; anything else gets the 401.
    location @moat_signin {
      if ($moat_location) {
        return 302 $moat_location;
      }
      return 401;
    }
  }
}
`))

// caddyfile is the README's Caddy configuration, with paths for a test.
var caddyfile = template.Must(template.New("caddy").Parse(`{
	admin off
	auto_https off
	persist_config off
	storage file_system {{.Dir}}/data
}

https://localhost:{{.Port}} {
	bind 127.0.0.1
	tls {{.Cert}} {{.Key}}
	route {
		# Nothing a client sends under moat's names reaches moat or the app.
		request_header -X-Moat-*
		# moat's own pages: sign-in, sign-out, account, console, JWKS.
		reverse_proxy /_moat/* https://{{.Moat}} {
			# Keep the client's host: moat's pages belong to it. Name this
			# very request, so that a client asking /_moat/auth itself
			# names nothing else (Caddy sets X-Forwarded-Host and -Proto).
			header_up Host {hostport}
			header_up X-Forwarded-Method {method}
			header_up X-Forwarded-Uri {uri}
			transport http {
				tls_insecure_skip_verify
			}
		}
		forward_auth https://{{.Moat}} {
			uri /_moat/auth
			copy_headers X-Moat-User-Email X-Moat-User-Id X-Moat-User-Groups X-Moat-Assertion X-Moat-Cookie>Cookie
			transport http {
				tls_insecure_skip_verify
			}
		}
		reverse_proxy {{.App}}
	}
}
`))

// ingressKinds are the ingresses the forward-auth tests run behind.
var ingressKinds = []string{"nginx", "caddy"}

// startIngress runs the named ingress in front of moat and app (host:port
// of an HTTP app) on a free port, serving cert, until the test ends.
func startIngress(t testing.TB, kind string, m *Moat, app string, cert *ingressCert) *ingress {
	t.Helper()
	dir := t.TempDir()
	port := testnet.FreePort(t)
	s := ingressSetup{Dir: dir, Cert: cert.CertFile, Key: cert.KeyFile, Listen: fmt.Sprintf("127.0.0.1:%d", port),
		Port: fmt.Sprint(port), Moat: m.HTTPSAddr, App: app, Root: os.Geteuid() == 0}
	in := &ingress{Name: kind, URL: fmt.Sprintf("https://localhost:%d", port), Addr: s.Listen, logs: &testlog.Buffer{}}
	var cmd *exec.Cmd
	switch kind {
	case "nginx":
		bin := os.Getenv("MOAT_NGINX")
		if bin == "" {
			bin = testtool.Find(t, "run scripts/test, or apt-get install nginx", "nginx")
		}
		writeTemplate(t, filepath.Join(dir, "nginx.conf"), nginxConf, s)
		cmd = exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	case "caddy":
		bin := os.Getenv("MOAT_CADDY")
		if bin == "" {
			bin = testtool.Find(t, "run scripts/test, or sh scripts/install-caddy.sh", "caddy")
		}
		writeTemplate(t, filepath.Join(dir, "Caddyfile"), caddyfile, s)
		cmd = exec.Command(bin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	default:
		t.Fatalf("unknown ingress %q", kind)
	}
	var err error
	if in.proc, err = startChild(cmd, in.logs); err != nil {
		t.Fatalf("start %s: %v", kind, err)
	}
	t.Cleanup(func() {
		_ = in.proc.stop(10 * time.Second)
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("%s output:\n%s\n%s", kind, in.logs.String(), errLog)
		}
	})
	if err := testnet.WaitListening(s.Listen, 30*time.Second, in.proc.done); err != nil {
		errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("%s: %v (%v)\n%s\n%s", kind, err, in.proc.err, in.logs.String(), errLog)
	}
	return in
}

func writeTemplate(t testing.TB, path string, tmpl *template.Template, data any) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tmpl.Execute(f, data); err != nil {
		t.Fatal(err)
	}
}

// ingressCert is the ingresses' certificate for localhost, in files.
type ingressCert struct {
	Cert              *x509.Certificate
	CertFile, KeyFile string
}

// newIngressCert makes a self-signed certificate for localhost and
// 127.0.0.1; browsers and clients in the tests trust it by its key.
func newIngressCert(t testing.TB) *ingressCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &ingressCert{Cert: cert, CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(c.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// TLSConfig trusts the ingress's certificate and nothing else.
func (c *ingressCert) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}
