package waf

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"testing"
)

const (
	xsrfToken   = "2|9f8e7d6c|0a1b2c3d4e5f60718293a4b5c6d7e8f9|1732780800"
	xsrfCookie  = "_streamlit_xsrf=" + xsrfToken
	sessionPath = "/_stcore/upload_file/8c9bb7d4-2f0e-4a7c-9a53-6f3d2a1b0c9e/f3a1c2d4-5b6e-4f70-8a91-b2c3d4e5f607"
)

// multipartFile builds a body the way Chromium encodes a FormData with one
// file, as Streamlit's st.file_uploader sends it.
func multipartFile(t testing.TB, name, ctype string, content []byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	if err := w.SetBoundary("----WebKitFormBoundary7MA4YWxkTrZu0gW"); err != nil {
		t.Fatal(err)
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, name))
	h.Set("Content-Type", ctype)
	part, err := w.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := part.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), w.FormDataContentType()
}

// fetchHeaders are what Chromium adds to a same-origin subresource or fetch.
func fetchHeaders(dest, accept string, extra ...string) map[string]string {
	h := map[string]string{
		"Accept":         accept,
		"Sec-Fetch-Dest": dest,
		"Sec-Fetch-Mode": "cors",
		"Sec-Fetch-Site": "same-origin",
		"Referer":        "https://app.example.com/",
		"Cookie":         xsrfCookie,
		// A subresource request carries neither of these.
		"Sec-Fetch-User":            "",
		"Upgrade-Insecure-Requests": "",
		"Cache-Control":             "",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

// streamlitRequests is one Streamlit session as Chromium sends it: page,
// assets, health and config probes, the WebSocket upgrade, a file upload
// and its removal, and a media file.
func streamlitRequests(t testing.TB) []struct {
	name string
	r    *http.Request
} {
	upload, uploadType := multipartFile(t, "sales 2024 (final).csv", "text/csv",
		[]byte("region,month,revenue\nEMEA,2024-01,1200.50\n\"APAC, North\",2024-02,-3.2e3\n"))
	type named = struct {
		name string
		r    *http.Request
	}
	reqs := []named{
		{"the page", req("GET", "/", "", map[string]string{"Cookie": xsrfCookie})},
		{"the page with query params", req("GET", "/?embed=true&embed_options=light_theme", "", nil)},
		{"a script", req("GET", "/static/js/index.CdnwS1Bt.js", "", fetchHeaders("script", "*/*", "Origin", "https://app.example.com"))},
		{"a stylesheet", req("GET", "/static/css/index.C6hHRx2v.css", "", fetchHeaders("style", "text/css,*/*;q=0.1"))},
		{"a font", req("GET", "/static/media/SourceSansPro-Regular.DZLUzqI4.woff2", "", fetchHeaders("font", "*/*", "Origin", "https://app.example.com"))},
		{"the favicon", req("GET", "/favicon.png", "", fetchHeaders("image", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"))},
		{"the health probe", req("GET", "/_stcore/health", "", fetchHeaders("empty", "*/*"))},
		{"the host config", req("GET", "/_stcore/host-config", "", fetchHeaders("empty", "*/*"))},
		{"the WebSocket upgrade", req("GET", "/_stcore/stream", "", map[string]string{
			"Connection":                "Upgrade",
			"Upgrade":                   "websocket",
			"Origin":                    "https://app.example.com",
			"Sec-WebSocket-Version":     "13",
			"Sec-WebSocket-Key":         "dGhlIHNhbXBsZSBub25jZQ==",
			"Sec-WebSocket-Extensions":  "permessage-deflate; client_max_window_bits",
			"Sec-WebSocket-Protocol":    "streamlit, " + xsrfToken,
			"Cookie":                    xsrfCookie,
			"Pragma":                    "no-cache",
			"Cache-Control":             "no-cache",
			"Accept":                    "",
			"Sec-Fetch-Dest":            "websocket",
			"Sec-Fetch-Mode":            "websocket",
			"Sec-Fetch-Site":            "same-origin",
			"Sec-Fetch-User":            "",
			"Upgrade-Insecure-Requests": "",
		})},
		{"a file upload", req("PUT", sessionPath, string(upload), fetchHeaders("empty", "application/json, text/plain, */*",
			"Content-Type", uploadType, "Origin", "https://app.example.com", "X-Xsrftoken", xsrfToken))},
		{"a file removal", req("DELETE", sessionPath, "", fetchHeaders("empty", "application/json, text/plain, */*",
			"Origin", "https://app.example.com", "X-Xsrftoken", xsrfToken))},
		{"a media file", req("GET", "/media/5c1bd3f4e0b9a8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7.png", "", fetchHeaders("image", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"))},
		{"a component page", req("GET", "/component/streamlit_folium.st_folium/index.html?streamlitUrl=https%3A%2F%2Fapp.example.com%2F", "",
			fetchHeaders("iframe", chromeHeaders["Accept"], "Sec-Fetch-Mode", "navigate"))},
		{"the metrics", req("GET", "/_stcore/metrics", "", fetchHeaders("empty", "application/openmetrics-text"))},
	}
	for _, n := range reqs {
		for k, v := range n.r.Header {
			if len(v) == 1 && v[0] == "" {
				n.r.Header.Del(k)
			}
		}
	}
	return reqs
}

func TestStreamlitTrafficPassesAtParanoiaOneAndTwo(t *testing.T) {
	for _, paranoia := range []int{1, 2} {
		f := firewall(t, fmt.Sprintf("all-pl%d", paranoia), allSets(paranoia))
		for _, tt := range streamlitRequests(t) {
			t.Run(fmt.Sprintf("paranoia %d lets %s pass", paranoia, tt.name), func(t *testing.T) {
				v, err := f.Inspect(tt.r)
				if err != nil {
					t.Fatal(err)
				}
				if v.WouldBlock {
					t.Errorf("blocked: %+v", v)
				}
			})
		}
	}
}

func TestStreamlitUnderABasePathPasses(t *testing.T) {
	f := firewall(t, "all-pl2", allSets(2))
	for _, tt := range streamlitRequests(t) {
		t.Run(tt.name+" under /analytics", func(t *testing.T) {
			tt.r.URL.Path = "/analytics" + tt.r.URL.Path
			tt.r.RequestURI = tt.r.URL.RequestURI()
			v, err := f.Inspect(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if v.WouldBlock {
				t.Errorf("blocked: %+v", v)
			}
		})
	}
}

func TestStreamlitExclusionsDoNotOpenItsEndpoints(t *testing.T) {
	f := firewall(t, "all-pl1", allSets(1))
	tests := []struct {
		name string
		r    *http.Request
	}{
		{"an injection in the upload URL's query", req("PUT", sessionPath+"?x=1'+OR+'1'='1", "", nil)},
		{"an injection in another cookie beside the xsrf cookie", req("GET", "/_stcore/health", "", map[string]string{
			"Cookie": xsrfCookie + "; theme=1' OR '1'='1"})},
		{"a script in a component's query", req("GET", "/component/x/index.html?streamlitUrl=<script>alert(1)</script>", "", nil)},
		{"a traversal through the static path", req("GET", "/static/../../../../etc/passwd", "", nil)},
		{"PUT outside the upload endpoint", req("PUT", "/_stcore/other/a/b", "", nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is blocked", func(t *testing.T) {
			v, err := f.Inspect(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if !v.Blocked {
				t.Errorf("passed: %+v", v)
			}
		})
	}
}
