// Package chart draws charts as self-contained SVG for moat's own pages
// (the demo dashboard, the console's usage page): no script, colours as
// presentation attributes rather than styles, so they render under a
// Content-Security-Policy without 'unsafe-inline', and every text escaped.
package chart

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Palette is the Okabe–Ito qualitative palette (without its yellow, too
// pale on white): its colours stay apart for the common colour-vision
// deficiencies.
var Palette = []string{"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000"}

// Ticks returns evenly spaced round values (steps of 1, 2 or 5 times a
// power of ten) covering [lo, hi] with about n ticks.
func Ticks(lo, hi float64, n int) []float64 {
	raw := (hi - lo) / float64(n-1)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag * 10
	for _, s := range []float64{1, 2, 5, 10} {
		if raw <= s*mag {
			step = s * mag
			break
		}
	}
	first := math.Floor(lo/step) * step
	last := math.Ceil(hi/step) * step
	var ticks []float64
	for t := first; t <= last+step/2; t += step {
		// Snap away floating-point dust so 0 prints as "0", not "-0.0".
		ticks = append(ticks, math.Round(t/step)*step)
	}
	return ticks
}

// TickLabel formats an axis value with as few digits as it needs.
func TickLabel(v float64) string {
	if v == 0 {
		return "0"
	}
	// Round away floating-point dust (0.30000000000000004) first.
	return strconv.FormatFloat(math.Round(v*1e9)/1e9, 'f', -1, 64)
}

// Num formats an SVG coordinate with one decimal, enough at these sizes.
func Num(v float64) string {
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// Series is one named line of a line chart.
type Series struct {
	Name   string
	Values []float64 // one per x label
}

// Geometry of the charts drawn here, in SVG user units; the SVG scales to
// its container through its viewBox.
const (
	width        = 720
	lineHeight   = 300
	marginLeft   = 48
	marginRight  = 16
	marginTop    = 44
	marginBottom = 32
	barRow       = 30
	barLabel     = 220 // the labels' column
	barNote      = 250 // the notes' column, after the longest bar
)

// Lines draws series over the x labels as a line chart of whole counts
// (the y axis never shows fractions), with a legend above the plot. The
// x axis labels about eight of the points. With one series the area
// under the line is shaded. title is the chart's accessible name.
func Lines(title string, x []string, series []Series) string {
	hi := 1.0
	for _, s := range series {
		for _, v := range s.Values {
			hi = max(hi, v)
		}
	}
	ticks := Ticks(0, hi, 5)
	if step := ticks[1] - ticks[0]; step < 1 {
		ticks = Ticks(0, max(hi, 4), 5)
	}
	top := ticks[len(ticks)-1]
	plotW, plotH := float64(width-marginLeft-marginRight), float64(lineHeight-marginTop-marginBottom)
	y := func(v float64) float64 { return marginTop + (top-v)/top*plotH }
	xAt := func(i int) float64 {
		if len(x) < 2 {
			return marginLeft + plotW/2
		}
		return marginLeft + float64(i)*plotW/float64(len(x)-1)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-lines" viewBox="0 0 %d %d" role="img" font-family="system-ui, sans-serif" font-size="13">`, width, lineHeight)
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(title))
	b.WriteString(`<g class="grid" stroke="#e1e6ed" stroke-width="1">`)
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%s" y2="%s"/>`, marginLeft, width-marginRight, Num(y(t)), Num(y(t)))
	}
	b.WriteString(`</g><g class="axis axis-y" fill="#556070" text-anchor="end">`)
	for _, t := range ticks {
		fmt.Fprintf(&b, `<text x="%d" y="%s" dy="4">%s</text>`, marginLeft-8, Num(y(t)), TickLabel(t))
	}
	b.WriteString(`</g><g class="axis axis-x" fill="#556070" text-anchor="middle">`)
	every := max(1, (len(x)+7)/8)
	for i, l := range x {
		if i%every == 0 || i == len(x)-1 && (len(x)-1)%every >= every/2 {
			fmt.Fprintf(&b, `<text x="%s" y="%d">%s</text>`, Num(xAt(i)), lineHeight-marginBottom+20, html.EscapeString(l))
		}
	}
	fmt.Fprintf(&b, `</g><line class="baseline" x1="%d" x2="%d" y1="%s" y2="%s" stroke="#8a94a3"/>`, marginLeft, width-marginRight, Num(y(0)), Num(y(0)))
	for j, s := range series {
		color := Palette[j%len(Palette)]
		fmt.Fprintf(&b, `<g class="series" data-series="%s">`, html.EscapeString(s.Name))
		pts := make([]string, len(s.Values))
		for i, v := range s.Values {
			pts[i] = Num(xAt(i)) + "," + Num(y(v))
		}
		if len(series) == 1 && len(pts) > 1 {
			fmt.Fprintf(&b, `<path class="area" d="M%s,%s L%s L%s,%s Z" fill="%s" fill-opacity="0.15"/>`,
				Num(xAt(0)), Num(y(0)), strings.Join(pts, " L"), Num(xAt(len(pts)-1)), Num(y(0)), color)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5" stroke-linejoin="round" stroke-linecap="round"/>`, strings.Join(pts, " "), color)
		// Many days: a dot on the days with use only, or the baseline
		// turns into a bead string.
		many := len(pts) > 45
		r := 3.5
		if many {
			r = 2.5
		}
		for i, v := range s.Values {
			if many && v == 0 {
				continue
			}
			fmt.Fprintf(&b, `<circle class="point" cx="%s" cy="%s" r="%s" fill="%s"><title>%s</title></circle>`,
				Num(xAt(i)), Num(y(v)), Num(r), color, html.EscapeString(fmt.Sprintf("%s · %s: %s", s.Name, x[min(i, len(x)-1)], TickLabel(v))))
		}
		b.WriteString(`</g>`)
	}
	// Legend above the plot, wrapping to a second line when long.
	b.WriteString(`<g class="legend" fill="#1b2430">`)
	lx, ly := float64(marginLeft), 18.0
	for j, s := range series {
		name := truncate(s.Name, 40)
		w := 28 + textWidth(name)
		if lx+w > width-marginRight && lx > marginLeft {
			lx, ly = marginLeft, ly+18
		}
		fmt.Fprintf(&b, `<g class="legend-item"><rect x="%s" y="%s" width="12" height="12" rx="2" fill="%s"/><text x="%s" y="%s">%s</text></g>`,
			Num(lx), Num(ly-10), Palette[j%len(Palette)], Num(lx+18), Num(ly), html.EscapeString(name))
		lx += w
	}
	b.WriteString(`</g></svg>`)
	return b.String()
}

// textWidth estimates the width of s at the charts' 13 px sans-serif, on the
// wide side so that legend items never touch: 8 px a character, 13 for a
// wide (CJK) one.
func textWidth(s string) float64 {
	w := 0.0
	for _, r := range s {
		if r >= 0x2E80 {
			w += 13
		} else {
			w += 8
		}
	}
	return w
}

// Bar is one labelled bar of a bar chart; Note is written after it.
type Bar struct {
	Label string
	Value float64
	Note  string
}

// Bars draws horizontal bars, one row each, labels on the left, scaled to
// the largest value. title is the chart's accessible name.
func Bars(title string, bars []Bar) string {
	hi := 0.0
	for _, r := range bars {
		hi = max(hi, r.Value)
	}
	if hi <= 0 {
		hi = 1
	}
	height := max(1, len(bars))*barRow + 8
	plotW := float64(width - barLabel - barNote)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-bars" viewBox="0 0 %d %d" role="img" font-family="system-ui, sans-serif" font-size="13">`, width, height)
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(title))
	for i, r := range bars {
		top := float64(4 + i*barRow)
		w := max(2, r.Value/hi*plotW)
		fmt.Fprintf(&b, `<g class="bar"><text x="%d" y="%s" text-anchor="end" fill="#1b2430">%s</text>`,
			barLabel-10, Num(top+barRow/2+4), html.EscapeString(truncate(r.Label, 32)))
		fmt.Fprintf(&b, `<rect x="%d" y="%s" width="%s" height="%d" rx="3" fill="%s"><title>%s</title></rect>`,
			barLabel, Num(top+5), Num(w), barRow-10, Palette[0], html.EscapeString(r.Label+": "+r.Note))
		fmt.Fprintf(&b, `<text x="%s" y="%s" fill="#556070">%s</text></g>`, Num(barLabel+w+8), Num(top+barRow/2+4), html.EscapeString(r.Note))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// truncate shortens s to n characters with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
