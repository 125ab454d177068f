package chart

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

var tickTests = []struct {
	name   string
	lo, hi float64
	want   string
}{
	{"a standard normal range gets whole steps", -2.3, 2.1, "-3 -2 -1 0 1 2 3"},
	{"a narrow range gets steps without float dust", 0.1, 0.6, "0.1 0.2 0.3 0.4 0.5 0.6"},
	{"a range of ten gets steps of two", 0, 10, "0 2 4 6 8 10"},
	{"a tiny range gets small steps", -0.01, 0.03, "-0.01 0 0.01 0.02 0.03"},
}

func TestNiceTicksCoverTheRangeInRoundSteps(t *testing.T) {
	for _, tt := range tickTests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range Ticks(tt.lo, tt.hi, 6) {
				got = append(got, TickLabel(v))
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("Ticks(%v, %v) = %v, want %s", tt.lo, tt.hi, got, tt.want)
			}
		})
	}
}

// wellFormed fails the test unless svg parses as XML.
func wellFormed(t *testing.T, svg string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := d.Token(); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
	}
}

func TestLinesEscapesNamesAndLabels(t *testing.T) {
	svg := Lines(`users <per> "day"`, []string{"03-01", "<b>"}, []Series{{Name: `<script>alert(1)</script>`, Values: []float64{1, 3}}})
	wellFormed(t, svg)
	if strings.Contains(svg, "<script>") || strings.Contains(svg, "<b>") {
		t.Errorf("a name or label reached the SVG unescaped:\n%s", svg)
	}
	if !strings.Contains(svg, "&lt;script&gt;") || !strings.Contains(svg, `<title>users &lt;per&gt; &#34;day&#34;</title>`) {
		t.Errorf("the escaped name or title is missing:\n%s", svg)
	}
}

func TestLinesOfSmallCountsHaveWholeTicks(t *testing.T) {
	svg := Lines("users", []string{"a", "b", "c"}, []Series{{Name: "r1", Values: []float64{0, 1, 2}}, {Name: "r2", Values: []float64{1, 1, 0}}})
	wellFormed(t, svg)
	for _, frac := range []string{">0.5<", ">1.5<", ">0.2<"} {
		if strings.Contains(svg, frac) {
			t.Errorf("a count axis shows the fraction %s:\n%s", frac, svg)
		}
	}
	if got := strings.Count(svg, `<polyline`); got != 2 {
		t.Errorf("%d lines, want one per series", got)
	}
	if strings.Contains(svg, `class="area"`) {
		t.Error("several series are shaded; only a lone series is")
	}
}

func TestBarsScaleToTheLargestAndEscape(t *testing.T) {
	svg := Bars("top users", []Bar{{Label: "alice@example.com", Value: 40, Note: "40 min"}, {Label: "<i>bob</i>", Value: 10, Note: "10 min"}})
	wellFormed(t, svg)
	if strings.Contains(svg, "<i>") {
		t.Errorf("a label reached the SVG unescaped:\n%s", svg)
	}
	if !strings.Contains(svg, `width="250.0"`) || !strings.Contains(svg, `width="62.5"`) {
		t.Errorf("bars are not scaled to the largest (250 and 62.5 wide):\n%s", svg)
	}
	wellFormed(t, Bars("none", nil))
}
