package image

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/store/storetest"
	"github.com/moat-dev/moat/internal/testlog"
	"github.com/moat-dev/moat/internal/testnet"
	"github.com/moat-dev/moat/internal/testtool"
)

// imageName is what scripts/image builds by default and CI runs.
const imageName = "localhost/moat:dev"

// The image's user: non-root, and not any host user's.
const imageUID = 65532

var (
	repoRoot string
	workDir  string
)

func TestMain(m *testing.M) {
	// go test runs a test binary in its package's folder (whatever
	// -trimpath did to the file names the binary knows).
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	repoRoot = filepath.Join(wd, "..", "..")
	dir, err := os.MkdirTemp("", "moat-image-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	storetest.Stop()
	_ = os.RemoveAll(workDir)
	os.Exit(code)
}

// requireTools skips or fails when buildah, runc or root is missing.
func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"buildah", "runc"} {
		testtool.Find(t, "scripts/test installs it: apt-get install "+tool, tool)
	}
	if os.Geteuid() != 0 {
		testtool.Missing(t, "runc needs root to run the image without a user namespace")
	}
}

// imageConfig is the part of the OCI image configuration a runtime uses.
type imageConfig struct {
	User       string   `json:"User"`
	Env        []string `json:"Env"`
	Entrypoint []string `json:"Entrypoint"`
	Cmd        []string `json:"Cmd"`
	WorkingDir string   `json:"WorkingDir"`
}

// builtImage is localhost/moat:dev, built and unpacked once per run.
type builtImage struct {
	once          sync.Once
	err           error
	rootfs        string
	config        imageConfig
	files         map[string]*tar.Header // path → header, from the layers
	layerBytes    int64                  // compressed, as a registry stores it
	unpackedBytes int64
}

var built builtImage

// image builds the image with scripts/image (quick when Go's build cache is
// warm), exports it as an OCI layout and unpacks its layers as a runtime
// would.
func image(t *testing.T) *builtImage {
	t.Helper()
	requireTools(t)
	built.once.Do(func() { built.err = buildAndUnpack() })
	if built.err != nil {
		t.Fatal(built.err)
	}
	return &built
}

func buildAndUnpack() error {
	start := time.Now()
	cmd := exec.Command(filepath.Join(repoRoot, "scripts", "image"))
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/image: %v\n%s", err, out)
	}
	layout := filepath.Join(workDir, "layout")
	if out, err := exec.Command("buildah", "push", "--quiet", imageName, "oci:"+layout+":moat").CombinedOutput(); err != nil {
		return fmt.Errorf("buildah push to an OCI layout: %v\n%s", err, out)
	}
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	if err := readJSON(filepath.Join(layout, "index.json"), &index); err != nil || len(index.Manifests) != 1 {
		return fmt.Errorf("OCI layout index: %v (%d manifests)", err, len(index.Manifests))
	}
	var manifest struct {
		Config struct{ Digest string } `json:"config"`
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
			Size      int64  `json:"size"`
		} `json:"layers"`
	}
	if err := readJSON(blob(layout, index.Manifests[0].Digest), &manifest); err != nil {
		return err
	}
	var cfg struct {
		Config imageConfig `json:"config"`
	}
	if err := readJSON(blob(layout, manifest.Config.Digest), &cfg); err != nil {
		return err
	}
	built.config = cfg.Config
	built.rootfs = filepath.Join(workDir, "rootfs")
	built.files = map[string]*tar.Header{}
	for _, l := range manifest.Layers {
		built.layerBytes += l.Size
		if err := unpackLayer(blob(layout, l.Digest), strings.HasSuffix(l.MediaType, "+gzip"), built.rootfs); err != nil {
			return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
		}
	}
	fmt.Fprintf(os.Stderr, "image: built and unpacked %s in %s\n", imageName, time.Since(start).Round(time.Millisecond))
	return nil
}

func blob(layout, digest string) string {
	algo, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(layout, "blobs", algo, hex)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// unpackLayer extracts a layer tar into dir with its owners and modes. A
// FROM scratch image has one layer and no whiteouts; anything else fails.
func unpackLayer(path string, gzipped bool, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if gzipped {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		if strings.Contains(filepath.Base(name), ".wh.") {
			return fmt.Errorf("unexpected whiteout %s in a FROM scratch image", h.Name)
		}
		built.files[strings.TrimPrefix(name, "/")] = h
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			n, err := io.Copy(out, tr)
			built.unpackedBytes += n
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected entry %s of type %c", h.Name, h.Typeflag)
		}
		if err := os.Lchown(target, h.Uid, h.Gid); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeSymlink {
			if err := os.Chmod(target, os.FileMode(h.Mode).Perm()); err != nil {
				return err
			}
		}
	}
}

func TestTheImageHoldsOnlyWhatMoatNeedsAndRunsAsANonRootUser(t *testing.T) {
	img := image(t)
	var names []string
	for name, h := range img.files {
		if h.Typeflag != tar.TypeDir {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "moat"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("files in the image: %q, want exactly %q", names, want)
	}
	if h := img.files["moat"]; h == nil || h.Uid != 0 || h.Mode&0o022 != 0 || h.Mode&0o111 == 0 {
		t.Errorf("/moat: %+v, want root-owned, executable, not writable by others", h)
	}
	if h := img.files["var/lib/moat"]; h == nil || h.Uid != imageUID || h.Gid != imageUID || os.FileMode(h.Mode).Perm() != 0o700 {
		t.Errorf("/var/lib/moat: %+v, want a 0700 directory owned by %d", h, imageUID)
	}
	for _, dir := range []string{"var", "var/lib", "etc"} {
		if h := img.files[dir]; h == nil || h.Uid != 0 {
			t.Errorf("/%s is not root-owned: %+v", dir, h)
		}
	}
	if h := img.files["etc/ssl/certs/ca-certificates.crt"]; h == nil || h.Size < 1000 {
		t.Errorf("CA bundle missing or empty: %+v", h)
	}
	passwd, err := os.ReadFile(filepath.Join(img.rootfs, "etc", "passwd"))
	if err != nil || !strings.Contains(string(passwd), ":65532:65532:") {
		t.Errorf("/etc/passwd has no entry for 65532: %q %v", passwd, err)
	}
	c := img.config
	if c.User != "65532:65532" {
		t.Errorf("User %q, want 65532:65532", c.User)
	}
	if strings.Join(c.Entrypoint, " ") != "/moat" || strings.Join(c.Cmd, " ") != "serve -c /etc/moat/moat.yaml" {
		t.Errorf("Entrypoint %q Cmd %q, want [/moat] [serve -c /etc/moat/moat.yaml]", c.Entrypoint, c.Cmd)
	}
	out, err := exec.Command(filepath.Join(img.rootfs, "moat"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "moat ") {
		t.Errorf("/moat version: %q %v", out, err)
	}
	if file, err := exec.Command("file", "-b", filepath.Join(img.rootfs, "moat")).Output(); err == nil && !strings.Contains(string(file), "statically linked") {
		t.Errorf("/moat is not static: %s", file)
	}
	t.Logf("image %s: %.1f MiB compressed layers, %.1f MiB unpacked", imageName,
		float64(img.layerBytes)/(1<<20), float64(img.unpackedBytes)/(1<<20))
}

// mount is a host directory bound into a container.
type mount struct {
	host, dest string
	writable   bool
}

// containerSpec says how to run the image: args nil runs its own
// entrypoint and command.
type containerSpec struct {
	args   []string
	env    []string
	mounts []mount
	stdin  string
}

var containerSeq atomic.Int32

// bundle writes an OCI runtime bundle for spec: runc's default spec with
// the image's user, command and environment, a read-only root, no
// capabilities, no new privileges, no rlimits and the host's network.
func bundle(t *testing.T, spec containerSpec) (dir, id string) {
	t.Helper()
	img := image(t)
	id = fmt.Sprintf("moat-image-test-%d-%d", os.Getpid(), containerSeq.Add(1))
	dir = filepath.Join(workDir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("runc", "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	var s map[string]any
	if err := readJSON(filepath.Join(dir, "config.json"), &s); err != nil {
		t.Fatal(err)
	}
	uid, gid, ok := strings.Cut(img.config.User, ":")
	if !ok {
		t.Fatalf("image user %q is not uid:gid", img.config.User)
	}
	u, _ := strconv.Atoi(uid)
	g, _ := strconv.Atoi(gid)
	args := spec.args
	if args == nil {
		args = append(append([]string{}, img.config.Entrypoint...), img.config.Cmd...)
	}
	cwd := img.config.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	none := []string{}
	process := s["process"].(map[string]any)
	process["terminal"] = false
	process["user"] = map[string]any{"uid": u, "gid": g}
	process["args"] = args
	process["env"] = append(append([]string{"PATH=/"}, img.config.Env...), spec.env...)
	process["cwd"] = cwd
	process["capabilities"] = map[string]any{"bounding": none, "effective": none, "inheritable": none, "permitted": none, "ambient": none}
	process["noNewPrivileges"] = true
	delete(process, "rlimits") // this machine refuses setrlimit
	s["root"] = map[string]any{"path": img.rootfs, "readonly": true}
	linux := s["linux"].(map[string]any)
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" {
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	mounts := s["mounts"].([]any)
	for _, m := range spec.mounts {
		mode := "ro"
		if m.writable {
			mode = "rw"
		}
		mounts = append(mounts, map[string]any{"destination": m.dest, "type": "bind", "source": m.host,
			"options": []string{"rbind", mode, "nosuid", "nodev", "noexec"}})
	}
	s["mounts"] = mounts
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, id
}

// run runs spec to completion and returns its output.
func run(t *testing.T, spec containerSpec) string {
	t.Helper()
	dir, id := bundle(t, spec)
	cmd := exec.Command("runc", "run", "--bundle", dir, id)
	cmd.Stdin = strings.NewReader(spec.stdin)
	out, err := cmd.CombinedOutput()
	_ = exec.Command("runc", "delete", "--force", id).Run()
	if err != nil {
		t.Fatalf("runc run %q: %v\n%s", spec.args, err, out)
	}
	return string(out)
}

// container is a running image.
type container struct {
	id   string
	out  *testlog.Buffer
	done chan error
}

// start runs spec until the test ends (SIGTERM, then SIGKILL).
func start(t *testing.T, spec containerSpec) *container {
	t.Helper()
	dir, id := bundle(t, spec)
	c := &container{id: id, out: &testlog.Buffer{}, done: make(chan error, 1)}
	cmd := exec.Command("runc", "run", "--bundle", dir, id)
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("runc run: %v", err)
	}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = exec.Command("runc", "kill", id, "TERM").Run()
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			t.Errorf("container %s did not stop within 20s of SIGTERM", id)
			_ = exec.Command("runc", "kill", id, "KILL").Run()
			<-c.done
		}
		_ = exec.Command("runc", "delete", "--force", id).Run()
		if t.Failed() {
			t.Logf("container output:\n%s", c.out.String())
		}
	})
	return c
}

// status returns the container process's /proc status fields.
func (c *container) status(t *testing.T) (map[string]string, string) {
	t.Helper()
	out, err := exec.Command("runc", "state", c.id).Output()
	if err != nil {
		t.Fatalf("runc state: %v", err)
	}
	var st struct{ Pid int }
	if err := json.Unmarshal(out, &st); err != nil || st.Pid == 0 {
		t.Fatalf("runc state %s: %v", out, err)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return fields, string(mounts)
}

// checkConfinement asserts the process runs as the image's user with no
// capability, no way to gain privileges and a read-only root.
func (c *container) checkConfinement(t *testing.T) {
	t.Helper()
	st, mounts := c.status(t)
	want := fmt.Sprintf("%d %d %d %d", imageUID, imageUID, imageUID, imageUID)
	if st["Uid"] != want || st["Gid"] != want {
		t.Errorf("Uid %q Gid %q, want %s", st["Uid"], st["Gid"], want)
	}
	for _, capSet := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		if st[capSet] != "0000000000000000" {
			t.Errorf("%s = %s, want no capabilities", capSet, st[capSet])
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", st["NoNewPrivs"])
	}
	rootRO := false
	for _, line := range strings.Split(mounts, "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			rootRO = strings.HasPrefix(f[5], "ro")
		}
	}
	if !rootRO {
		t.Errorf("the root filesystem is not read-only:\n%s", mounts)
	}
}

// identityBackend is the app behind moat: it answers with the identity
// moat vouched for, and /health for moat's health check.
func identityBackend(t *testing.T) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		fmt.Fprintf(w, "user=%s proto=%s assertion=%t", r.Header.Get("X-Moat-User-Email"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Moat-Assertion") != "")
	}))
	t.Cleanup(b.Close)
	return b
}

// client sends every request to addr (over HTTPS it accepts any
// certificate: the test trusts what it started), keeping cookies, not
// following redirects.
func client(addr string) *http.Client {
	jar, _ := cookiejar.New(nil)
	return testnet.Pin{Addr: addr, Jar: jar}.Client()
}

// waitReady polls base's /_moat/readyz until it answers 200.
func waitReady(t *testing.T, c *http.Client, base string, ctr *container) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(base + "/_moat/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-ctr.done:
			t.Fatalf("the container exited before it was ready: %v\n%s", err, ctr.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat in the container not ready within 30s (last: %v)\n%s", err, ctr.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs c in through moat's login form at base, as a browser would,
// and returns what the app answered for / afterwards.
func signIn(t *testing.T, c *http.Client, base, email, password string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/_moat/login") {
		t.Fatalf("anonymous visit: %d to %q, want a redirect to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = c.Get(base + "/_moat/login?return_to=/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token := csrfField.FindStringSubmatch(string(page))
	if token == nil {
		t.Fatalf("login page (%d) has no CSRF token", resp.StatusCode)
	}
	form := url.Values{"csrf": {token[1]}, "email": {email}, "password": {password}, "return_to": {"/"}}
	req, _ = http.NewRequest(http.MethodPost, base+"/_moat/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login answered %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signed-in visit: %d %q", resp.StatusCode, body)
	}
	return string(body)
}

const (
	routeHost = "dash.test"
	email     = "yuki@customer-a.example"
	password  = "a long passphrase for the VPN users"
)

// writeConfig writes moat.yaml into a fresh directory to mount at /etc/moat.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "etc-moat")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "moat.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func addUser(t *testing.T, mounts []mount, env []string) {
	t.Helper()
	out := run(t, containerSpec{
		args:   []string{"/moat", "users", "add", email, "--password-stdin", "--group", "customer-a", "-c", "/etc/moat/moat.yaml"},
		env:    env,
		mounts: mounts,
		stdin:  password + "\n",
	})
	if !strings.Contains(out, "created user "+email) {
		t.Fatalf("moat users add in the image said %q", out)
	}
}

func TestSignInThroughTheImageWithItsOwnHTTPSAndTheEmbeddedStore(t *testing.T) {
	image(t)
	backend := identityBackend(t)
	httpsPort, internalPort := testnet.FreePort(t), testnet.FreePort(t)
	etc := writeConfig(t, fmt.Sprintf(`server:
  https_addr: "127.0.0.1:%d"
  http_addr: "off"
  internal_addr: "127.0.0.1:%d"
tls: {self_signed: true}
backends:
  dashboard: {url: %q, health_path: /health}
routes:
  - {host: %s, backend: dashboard, login: [password], allow: ["group:customer-a"]}
`, httpsPort, internalPort, backend.URL, routeHost))
	// data_dir is the one writable place: a volume the image's user owns.
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, imageUID, imageUID); err != nil {
		t.Fatal(err)
	}
	mounts := []mount{{host: etc, dest: "/etc/moat"}, {host: data, dest: "/var/lib/moat", writable: true}}
	addUser(t, mounts, nil)

	ctr := start(t, containerSpec{mounts: mounts})
	c := client(fmt.Sprintf("127.0.0.1:%d", httpsPort))
	base := "https://" + routeHost
	waitReady(t, c, base, ctr)
	ctr.checkConfinement(t)
	got := signIn(t, c, base, email, password)
	if want := "user=" + email + " proto=https assertion=true"; got != want {
		t.Errorf("the app answered %q, want %q", got, want)
	}
	key, err := os.Stat(filepath.Join(data, instancekey.FileName))
	if err != nil || key.Mode().Perm() != 0o600 {
		t.Errorf("data_dir/%s: %v, mode %v; want a 0600 key made for the brand-new store", instancekey.FileName, err, key.Mode())
	}
	entries, _ := os.ReadDir(data)
	for _, e := range entries {
		info, _ := e.Info()
		if st, ok := fileOwner(info); !ok || st != imageUID {
			t.Errorf("data_dir/%s is owned by %d, want %d", e.Name(), st, imageUID)
		}
	}
}

func TestSignInThroughTheImageBehindATLSTerminatingBalancerWithNothingWritable(t *testing.T) {
	image(t)
	dsn := storetest.Postgres(t)
	backend := identityBackend(t)
	httpPort, internalPort := testnet.FreePort(t), testnet.FreePort(t)
	etc := writeConfig(t, fmt.Sprintf(`server:
  https_addr: "off"
  http_addr: "127.0.0.1:%d"
  http_mode: serve
  internal_addr: "127.0.0.1:%d"
  trusted_proxies: ["127.0.0.1/32"]
store: "${MOAT_STORE}"
backends:
  dashboard: {url: %q, health_path: /health}
routes:
  - {host: %s, backend: dashboard, login: [password], allow: ["group:customer-a"]}
`, httpPort, internalPort, backend.URL, routeHost))
	key, err := instancekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	// No writable mount at all: the root is read-only, /var/lib/moat too.
	mounts := []mount{{host: etc, dest: "/etc/moat"}}
	env := []string{"MOAT_STORE=" + dsn, instancekey.EnvVar + "=" + key, "K_SERVICE=dashboard"}
	addUser(t, mounts, env)
	ctr := start(t, containerSpec{env: env, mounts: mounts})

	// The balancer terminates TLS and tells moat the client's address and
	// scheme, as Google's load balancer and Cloud Run do.
	moatURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", httpPort))
	balancer := httptest.NewTLSServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(moatURL)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		ErrorLog: log.New(io.Discard, "", 0), // refused while moat starts
	})
	t.Cleanup(balancer.Close)
	c := client(balancer.Listener.Addr().String())
	base := "https://" + routeHost
	waitReady(t, c, base, ctr)
	ctr.checkConfinement(t)
	got := signIn(t, c, base, email, password)
	if want := "user=" + email + " proto=https assertion=true"; got != want {
		t.Errorf("the app answered %q, want %q", got, want)
	}
	for _, line := range strings.Split(strings.TrimSpace(ctr.out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["severity"] == nil {
			t.Errorf("with K_SERVICE set, a log line without Cloud Logging's severity: %s", line)
			continue
		}
		if rec["severity"] == "ERROR" || rec["severity"] == "CRITICAL" {
			t.Errorf("error logged: %s", line)
		}
	}
}

// fileOwner returns the uid owning the file info describes.
func fileOwner(info os.FileInfo) (int, bool) {
	if info == nil {
		return -1, false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, false
	}
	return int(st.Uid), true
}

func TestSignInThroughTheImageWithItsOwnHTTPSAndASharedStoreWithNothingWritable(t *testing.T) {
	image(t)
	dsn := storetest.Postgres(t)
	backend := identityBackend(t)
	httpsPort, internalPort := testnet.FreePort(t), testnet.FreePort(t)
	// The self-signed certificate lives in the shared store, as the
	// users, sessions and keys do: data_dir is never written.
	etc := writeConfig(t, fmt.Sprintf(`server:
  https_addr: "127.0.0.1:%d"
  http_addr: "off"
  internal_addr: "127.0.0.1:%d"
tls: {self_signed: true}
store: "${MOAT_STORE}"
backends:
  dashboard: {url: %q, health_path: /health}
routes:
  - {host: %s, backend: dashboard, login: [password], allow: ["group:customer-a"]}
`, httpsPort, internalPort, backend.URL, routeHost))
	key, err := instancekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	mounts := []mount{{host: etc, dest: "/etc/moat"}}
	env := []string{"MOAT_STORE=" + dsn, instancekey.EnvVar + "=" + key}
	addUser(t, mounts, env)
	ctr := start(t, containerSpec{env: env, mounts: mounts})
	c := client(fmt.Sprintf("127.0.0.1:%d", httpsPort))
	base := "https://" + routeHost
	waitReady(t, c, base, ctr)
	ctr.checkConfinement(t)
	got := signIn(t, c, base, email, password)
	if want := "user=" + email + " proto=https assertion=true"; got != want {
		t.Errorf("the app answered %q, want %q", got, want)
	}
	if strings.Contains(ctr.out.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged:\n%s", ctr.out.String())
	}
}
