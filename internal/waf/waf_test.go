package waf

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moat-dev/moat/internal/config"
)

// chromeHeaders are the headers Chromium 131 sends on a navigation.
var chromeHeaders = map[string]string{
	"User-Agent":                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Accept":                    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
	"Accept-Encoding":           "gzip, deflate, br, zstd",
	"Accept-Language":           "en-US,en;q=0.9,ja;q=0.8",
	"Sec-Ch-Ua":                 `"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`,
	"Sec-Ch-Ua-Mobile":          "?0",
	"Sec-Ch-Ua-Platform":        `"Linux"`,
	"Sec-Fetch-Dest":            "document",
	"Sec-Fetch-Mode":            "navigate",
	"Sec-Fetch-Site":            "none",
	"Sec-Fetch-User":            "?1",
	"Upgrade-Insecure-Requests": "1",
	"Cache-Control":             "max-age=0",
}

// firewalls caches compiled firewalls by a key: compiling the CRS takes
// a noticeable fraction of a second.
var firewalls sync.Map

func firewall(t testing.TB, key string, cfg *config.WAF) *Firewall {
	t.Helper()
	if f, ok := firewalls.Load(key); ok {
		return f.(*Firewall)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", key, err)
	}
	firewalls.Store(key, f)
	return f
}

func allSets(paranoia int) *config.WAF {
	return &config.WAF{Paranoia: paranoia}
}

// req builds a request as the server would hand it to the proxy.
func req(method, target, body string, headers map[string]string) *http.Request {
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, target, nil)
	} else {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	}
	r.Host = "app.example.com"
	for k, v := range chromeHeaders {
		r.Header.Set(k, v)
	}
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func TestInspectBlocksAttacksAndPassesCleanRequests(t *testing.T) {
	f := firewall(t, "all-pl1", allSets(1))
	tests := []struct {
		name    string
		r       *http.Request
		blocked bool
		rule    int
	}{
		{"a plain page load passes", req("GET", "/", "", nil), false, 0},
		{"a query with ordinary words passes", req("GET", "/?q=hello+world&page=2", "", nil), false, 0},
		{"a tautology in the query is blocked", req("GET", "/?id=1'+OR+'1'='1", "", nil), true, 942100},
		{"a union select in a form body is blocked", req("POST", "/login", "user=a&pass=1 UNION SELECT password FROM users--",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}), true, 942100},
		{"a script tag in the query is blocked", req("GET", "/?name=<script>alert(1)</script>", "", nil), true, 941100},
		{"an XSS in a JSON body is blocked", req("POST", "/api", `{"comment":"<img src=x onerror=alert(1)>"}`,
			map[string]string{"Content-Type": "application/json"}), true, 941100},
		{"a path traversal is blocked", req("GET", "/?file=../../../../etc/passwd", "", nil), true, 930100},
		{"a clean JSON body passes", req("POST", "/api", `{"name":"Alice","age":31,"tags":["a","b"]}`,
			map[string]string{"Content-Type": "application/json"}), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := f.Inspect(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if v.Blocked != tt.blocked {
				t.Fatalf("Blocked = %v, want %v (verdict %+v)", v.Blocked, tt.blocked, v)
			}
			if tt.blocked {
				if v.Status != http.StatusForbidden {
					t.Errorf("Status = %d, want 403", v.Status)
				}
				if !slices.Contains(v.RuleIDs, tt.rule) || !slices.Contains(v.RuleIDs, 949110) {
					t.Errorf("RuleIDs = %v, want %d and 949110", v.RuleIDs, tt.rule)
				}
				if v.Message == "" {
					t.Error("Message is empty")
				}
			}
		})
	}
}

func TestInspectRestoresTheBody(t *testing.T) {
	f := firewall(t, "sqli-small-body", &config.WAF{RuleSets: []string{"sqli"}, BodyLimit: 64})
	tests := []struct {
		name    string
		body    string
		blocked bool
	}{
		{"a short clean body is restored", "a=hello&b=world", false},
		{"a long clean body is restored whole", "a=" + strings.Repeat("x", 10000), false},
		{"an attack within the limit is blocked", "a=1' OR '1'='1", true},
		{"an attack beyond the limit is not seen", "pad=" + strings.Repeat("x", 100) + "&a=1' OR '1'='1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req("POST", "/submit", tt.body, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
			v, err := f.Inspect(r)
			if err != nil {
				t.Fatal(err)
			}
			if v.Blocked != tt.blocked {
				t.Fatalf("Blocked = %v, want %v (%+v)", v.Blocked, tt.blocked, v)
			}
			got, err := io.ReadAll(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.body {
				t.Errorf("restored body has %d bytes, want %d", len(got), len(tt.body))
			}
			if err := r.Body.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestInspectBodyThroughARealServer(t *testing.T) {
	f := firewall(t, "all-pl1", allSets(1))
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := f.Inspect(r)
		if err != nil || v.Blocked {
			http.Error(w, "blocked", http.StatusForbidden)
			return
		}
		got, _ = io.ReadAll(r.Body)
	}))
	t.Cleanup(srv.Close)
	// A 640 KB CSV, well beyond the default limit, uploaded as Streamlit's
	// st.file_uploader does.
	csv := bytes.Repeat([]byte("id,name,score\n1,alice,0.5\n"), 25000)
	body, ctype := multipartFile(t, "data.csv", "text/csv", csv)
	put, err := http.NewRequest("PUT", srv.URL+"/_stcore/upload_file/8c9bb7d4-2f0e-4a7c-9a53-6f3d2a1b0c9e/f3a1c2d4", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	put.Header.Set("Content-Type", ctype)
	put.Header.Set("X-Xsrftoken", "2|9f8e7d6c|0a1b2c3d4e5f60718293a4b5c6d7e8f9|1732780800")
	put.Header.Set("Cookie", "_streamlit_xsrf=2|9f8e7d6c|0a1b2c3d4e5f60718293a4b5c6d7e8f9|1732780800")
	resp, err := http.DefaultClient.Do(put)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("backend got %d bytes, want %d", len(got), len(body))
	}
}

func TestPreviewReportsWithoutBlocking(t *testing.T) {
	f := firewall(t, "all-pl1-preview", &config.WAF{Preview: true})
	v, err := f.Inspect(req("GET", "/?id=1'+OR+'1'='1", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	if v.Blocked || !v.WouldBlock || v.Status != 403 || !slices.Contains(v.RuleIDs, 942100) {
		t.Fatalf("verdict %+v, want WouldBlock with 942100 and not Blocked", v)
	}
	if !f.Preview() {
		t.Error("Preview() = false")
	}
}

func TestParanoiaChangesWhatIsBlocked(t *testing.T) {
	// 942430 (restricted SQL characters, 12 or more) is a paranoia 2 rule.
	target := "/?q=" + strings.Repeat("%27%28", 8)
	tests := []struct {
		paranoia int
		blocked  bool
	}{{1, false}, {2, true}}
	for _, tt := range tests {
		f := firewall(t, "sqli-pl"+string(rune('0'+tt.paranoia)), &config.WAF{RuleSets: []string{"sqli"}, Paranoia: tt.paranoia})
		v, err := f.Inspect(req("GET", target, "", nil))
		if err != nil {
			t.Fatal(err)
		}
		if v.Blocked != tt.blocked {
			t.Errorf("paranoia %d: Blocked = %v, want %v (%+v)", tt.paranoia, v.Blocked, tt.blocked, v)
		}
	}
}

func TestInspectIsSafeForConcurrentUse(t *testing.T) {
	f := firewall(t, "all-pl1", allSets(1))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 5 {
				attack := (i+j)%2 == 0
				target := "/?q=hello"
				if attack {
					target = "/?q=1'+OR+'1'='1"
				}
				v, err := f.Inspect(req("GET", target, "", nil))
				if err != nil || v.Blocked != attack {
					t.Errorf("%s: verdict %+v, err %v", target, v, err)
				}
			}
		})
	}
	wg.Wait()
}
