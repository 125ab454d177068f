package demoapp

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// newServer starts the demo app on a real loopback socket.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New())
	t.Cleanup(srv.Close)
	return srv
}

// get fetches path from srv with optional header pairs.
func get(t *testing.T, srv *httptest.Server, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp, string(body)
}

// viewOf returns the inner HTML of the page's #view section.
func viewOf(t *testing.T, page string) (dataMode, inner string) {
	t.Helper()
	m := regexp.MustCompile(`(?s)<section id="view" class="view" data-mode="([a-z]+)">(.*?)</section>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("page has no #view section:\n%s", page)
	}
	return m[1], m[2]
}

var pageModeTests = []struct {
	name, query, wantMode, wantMarker string
}{
	{"no mode shows the line chart like the seed's first radio option", "/", "line", `class="chart chart-line"`},
	{"mode line shows the line chart", "/?mode=line", "line", `class="chart chart-line"`},
	{"mode bar shows the bar chart", "/?mode=bar", "bar", `class="chart chart-bar"`},
	{"mode area shows the area chart", "/?mode=area", "area", `class="chart chart-area"`},
	{"mode table shows the data table", "/?mode=table", "table", `id="data-table"`},
}

func TestPageRendersEachModeAsAPlainFormGet(t *testing.T) {
	srv := newServer(t)
	for _, tt := range pageModeTests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, tt.query)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200; body:\n%s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy = %q, want default-src 'self' first", csp)
			}
			mode, inner := viewOf(t, body)
			if mode != tt.wantMode {
				t.Errorf("#view data-mode = %q, want %q", mode, tt.wantMode)
			}
			if !strings.Contains(inner, tt.wantMarker) {
				t.Errorf("#view does not contain %s", tt.wantMarker)
			}
			checked := regexp.MustCompile(`<input type="radio" name="mode" value="([a-z]+)" checked>`).FindAllStringSubmatch(body, -1)
			if len(checked) != 1 || checked[0][1] != tt.wantMode {
				t.Errorf("checked radios = %v, want exactly %q", checked, tt.wantMode)
			}
			for _, v := range []string{"line", "bar", "area", "table"} {
				if !strings.Contains(body, `name="mode" value="`+v+`"`) {
					t.Errorf("page lacks the radio input for %q", v)
				}
			}
			if !strings.Contains(body, "<title>Streamlit Sample") || !strings.Contains(body, "<h1>Streamlit Sample</h1>") {
				t.Error("page is not titled like the seed's dashboard")
			}
		})
	}
}

var badRequestTests = []struct{ name, path string }{
	{"an unknown mode", "/?mode=pie"},
	{"an uppercase mode", "/?mode=LINE"},
	{"markup in the mode", "/?mode=%3Cscript%3E"},
}

func TestPageRejectsABadMode(t *testing.T) {
	srv := newServer(t)
	for _, tt := range badRequestTests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, tt.path)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q, want text/plain so nothing reflected is HTML", ct)
			}
			if !strings.Contains(body, "unknown mode") {
				t.Errorf("body = %q, want it to say unknown mode", body)
			}
		})
	}
}

func TestPageShowsTheSignedInUserEscaped(t *testing.T) {
	srv := newServer(t)
	_, body := get(t, srv, "/", UserEmailHeader, `ann<script>alert(1)</script>@example.com`)
	if !strings.Contains(body, `Signed in as <strong>ann&lt;script&gt;alert(1)&lt;/script&gt;@example.com</strong>`) {
		t.Errorf("page does not show the escaped user:\n%s", body)
	}
	if strings.Contains(body, "<script>alert") {
		t.Error("the user header reached the page unescaped")
	}

	_, body = get(t, srv, "/")
	if strings.Contains(body, "Signed in as") {
		t.Error("page claims a signed-in user without the header")
	}

	_, body = get(t, srv, "/", UserEmailHeader, strings.Repeat("x", 5000)+"@example.com")
	shown := regexp.MustCompile(`Signed in as <strong>(x*)`).FindStringSubmatch(body)
	if shown == nil {
		t.Fatal("an overlong user header is not shown at all")
	}
	if len(shown[1]) != maxEmailLen {
		t.Errorf("an overlong user header shows %d characters, want it cut to %d", len(shown[1]), maxEmailLen)
	}
}

// The page must work under CSP default-src 'self': no inline script,
// style or handler, and nothing loaded from another origin.
func TestPageNeedsNothingInlineAndNothingExternal(t *testing.T) {
	srv := newServer(t)
	for _, q := range []string{"/?mode=line", "/?mode=table"} {
		_, body := get(t, srv, q)
		for _, bad := range []*regexp.Regexp{
			regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>`),
			regexp.MustCompile(`<script(?:(?:\s+[a-z]+(?:="[^"]*")?)*)?\s*>`), // a script tag without src
			regexp.MustCompile(`<style`),
			regexp.MustCompile(`\sstyle=`),
			regexp.MustCompile(`\son[a-z]+=`),
			regexp.MustCompile(`(?:src|srcset)="(?:https?:)?//`),
			regexp.MustCompile(`<link[^>]+href="(?:https?:)?//`),
		} {
			for _, m := range bad.FindAllString(body, -1) {
				if strings.Contains(m, `src="static/app.js"`) {
					continue
				}
				t.Errorf("%s: page has %q, which CSP default-src 'self' forbids", q, m)
			}
		}
		if !strings.Contains(body, `<script src="static/app.js" defer></script>`) {
			t.Errorf("%s: page does not load its script from static/app.js", q)
		}
	}
}

var staticTests = []struct {
	name, path string
	status     int
	typ        string
}{
	{"the script is served as JavaScript", "/static/app.js", 200, "text/javascript; charset=utf-8"},
	{"the style sheet is served as CSS", "/static/demo.css", 200, "text/css; charset=utf-8"},
	{"an unknown asset is not found", "/static/nope.js", 404, ""},
	{"the static folder is not listed", "/static/", 404, ""},
	{"an unknown page is not found", "/admin", 404, ""},
	{"a path under the page is not found", "/index.html", 404, ""},
}

func TestStaticFilesAndUnknownPaths(t *testing.T) {
	srv := newServer(t)
	for _, tt := range staticTests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.typ != "" {
				if got := resp.Header.Get("Content-Type"); got != tt.typ {
					t.Errorf("Content-Type = %q, want %q", got, tt.typ)
				}
				if len(body) < 100 {
					t.Errorf("body is only %d bytes", len(body))
				}
				etag := resp.Header.Get("ETag")
				again, _ := get(t, srv, tt.path, "If-None-Match", etag)
				if etag == "" || again.StatusCode != http.StatusNotModified {
					t.Errorf("revalidation with ETag %q gave %d, want 304", etag, again.StatusCode)
				}
			}
		})
	}
}

func TestScriptSendsTheModeAndUpdatesTheView(t *testing.T) {
	srv := newServer(t)
	_, js := get(t, srv, "/static/app.js")
	for _, want := range []string{
		`new URL("ws", location.href)`, `"wss:"`, `"ws:"`,
		`JSON.stringify({ mode: mode })`, `view.innerHTML = msg.html`, `view.setAttribute("data-mode", msg.mode)`,
	} {
		if !strings.Contains(js, want) {
			t.Errorf("app.js lacks %s", want)
		}
	}
}

func TestHealthzAnswersOK(t *testing.T) {
	srv := newServer(t)
	resp, body := get(t, srv, "/healthz")
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
}

func TestOnlyGetAndHeadAreServed(t *testing.T) {
	srv := newServer(t)
	resp, err := srv.Client().Post(srv.URL+"/?mode=bar", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST / = %d, want 405", resp.StatusCode)
	}
}

func TestDataIsDrawnOncePerProcess(t *testing.T) {
	a, b := New().(*app), New().(*app)
	if a.data != b.data {
		t.Fatal("two handlers show different data")
	}
	var zero frame
	if *a.data == zero {
		t.Fatal("data is all zeros")
	}
}

// svgDoc is the part of the chart the tests look at.
type svgDoc struct {
	XMLName xml.Name `xml:"http://www.w3.org/2000/svg svg"`
	Class   string   `xml:"class,attr"`
	ViewBox string   `xml:"viewBox,attr"`
	Title   string   `xml:"title"`
	Lines   []svgEl  `xml:"line"`
	Groups  []svgG   `xml:"g"`
}

type svgG struct {
	Class    string    `xml:"class,attr"`
	Series   string    `xml:"data-series,attr"`
	Circles  []svgEl   `xml:"circle"`
	Rects    []svgEl   `xml:"rect"`
	Polyline []svgEl   `xml:"polyline"`
	Paths    []svgEl   `xml:"path"`
	Texts    []string  `xml:"text"`
	Lines    []svgEl   `xml:"line"`
	Items    []svgItem `xml:"g"`
}

type svgItem struct {
	Series string `xml:"data-series,attr"`
	Rect   svgEl  `xml:"rect"`
	Text   string `xml:"text"`
}

type svgEl struct {
	Class  string `xml:"class,attr"`
	Fill   string `xml:"fill,attr"`
	Stroke string `xml:"stroke,attr"`
	Points string `xml:"points,attr"`
	Title  string `xml:"title"`
}

// decodeSVG decodes the chart strictly as XML.
func decodeSVG(t *testing.T, s string) svgDoc {
	t.Helper()
	var doc svgDoc
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	if err := d.Decode(&doc); err != nil {
		t.Fatalf("chart is not well-formed XML: %v\n%s", err, s)
	}
	return doc
}

func TestChartsAreWellFormedSVGWithTwentyPointsPerSeries(t *testing.T) {
	data := processFrame()
	for _, m := range []mode{modeLine, modeBar, modeArea} {
		t.Run(string(m), func(t *testing.T) {
			doc := decodeSVG(t, data.render(m))
			if doc.Class != "chart chart-"+string(m) {
				t.Errorf("class = %q", doc.Class)
			}
			if doc.ViewBox == "" || doc.Title == "" {
				t.Error("chart lacks a viewBox or an accessible title")
			}
			series := map[string]svgG{}
			var legend, xAxis, yAxis *svgG
			for i, g := range doc.Groups {
				switch {
				case g.Series != "":
					series[g.Series] = g
				case g.Class == "legend":
					legend = &doc.Groups[i]
				case g.Class == "axis axis-x":
					xAxis = &doc.Groups[i]
				case g.Class == "axis axis-y":
					yAxis = &doc.Groups[i]
				}
			}
			if xAxis == nil || yAxis == nil || len(xAxis.Texts) < 5 || len(yAxis.Texts) < 3 {
				t.Fatal("chart lacks labelled x and y axes")
			}
			colors := map[string]bool{}
			for _, name := range columns {
				g, ok := series[name]
				if !ok {
					t.Fatalf("no series %q", name)
				}
				points := len(g.Circles)
				if m == modeBar {
					points = len(g.Rects)
				}
				if points != rows {
					t.Errorf("series %s has %d points, want %d", name, points, rows)
				}
				if m != modeBar {
					if len(g.Polyline) != 1 || len(strings.Fields(g.Polyline[0].Points)) != rows {
						t.Errorf("series %s line has %v, want one polyline of %d points", name, g.Polyline, rows)
					}
				}
				if m == modeArea && len(g.Paths) != 1 {
					t.Errorf("series %s has %d filled areas, want 1", name, len(g.Paths))
				}
			}
			if legend == nil || len(legend.Items) != len(columns) {
				t.Fatalf("legend = %+v, want one item per column", legend)
			}
			for i, it := range legend.Items {
				if it.Series != columns[i] || it.Text != columns[i] {
					t.Errorf("legend item %d = %q/%q, want %q", i, it.Series, it.Text, columns[i])
				}
				colors[it.Rect.Fill] = true
			}
			if len(colors) != len(columns) {
				t.Errorf("legend colours %v are not three distinct colours", colors)
			}
		})
	}
}

// htmlTable is the data table, which is also well-formed XML.
type htmlTable struct {
	ID   string `xml:"id,attr"`
	Head []struct {
		Cells []string `xml:"th"`
	} `xml:"thead>tr"`
	Rows []struct {
		Index string   `xml:"th"`
		Cells []string `xml:"td"`
	} `xml:"tbody>tr"`
}

func TestTableHasTwentyRowsOfThreeValues(t *testing.T) {
	var wrap struct {
		Table htmlTable `xml:"table"`
	}
	s := processFrame().render(modeTable)
	if err := xml.Unmarshal([]byte(s), &wrap); err != nil {
		t.Fatalf("table does not decode: %v\n%s", err, s)
	}
	tbl := wrap.Table
	if tbl.ID != "data-table" {
		t.Errorf("id = %q", tbl.ID)
	}
	if len(tbl.Head) != 1 || strings.Join(tbl.Head[0].Cells, ",") != ",a,b,c" {
		t.Errorf("header = %+v, want index then a, b, c", tbl.Head)
	}
	if len(tbl.Rows) != rows {
		t.Fatalf("table has %d rows, want %d", len(tbl.Rows), rows)
	}
	num := regexp.MustCompile(`^-?\d+\.\d{4}$`)
	for i, r := range tbl.Rows {
		if len(r.Cells) != 3 {
			t.Errorf("row %d has %d value cells, want 3", i, len(r.Cells))
		}
		for _, c := range r.Cells {
			if !num.MatchString(c) {
				t.Errorf("row %d cell %q is not a number to four decimals", i, c)
			}
		}
	}
}
