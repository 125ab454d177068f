package demoapp

import (
	"fmt"
	"strings"

	"github.com/moat-dev/moat/internal/chart"
)

// Chart geometry, in SVG user units. The SVG scales to its container
// through its viewBox, so these only fix the aspect ratio and the text size
// relative to the plot.
const (
	chartWidth   = 640
	chartHeight  = 360
	marginLeft   = 56
	marginRight  = 16
	marginTop    = 40
	marginBottom = 36
	plotWidth    = chartWidth - marginLeft - marginRight
	plotHeight   = chartHeight - marginTop - marginBottom
)

// seriesColors are the stroke and fill colours of a, b and c: distinct in
// hue and lightness, so they stay apart for the common colour-vision
// deficiencies and in greyscale.
var seriesColors = [len(columns)]string{"#1f77b4", "#e8710a", "#2ca02c"}

// chart renders m (line, bar or area) as a self-contained SVG element that
// is also well-formed XML. Colours are presentation attributes, not inline
// styles, so the chart looks right under a CSP without 'unsafe-inline'.
func (f *frame) chart(m mode) string {
	lo, hi := f.bounds()
	ticks := chart.Ticks(lo, hi, 6)
	lo, hi = min(lo, ticks[0]), max(hi, ticks[len(ticks)-1])
	y := func(v float64) float64 {
		return marginTop + (hi-v)/(hi-lo)*plotHeight
	}
	// Line and area charts put the points on the band edges; bars sit in
	// the middle of their band.
	x := func(i int) float64 {
		return marginLeft + float64(i)*plotWidth/(rows-1)
	}
	if m == modeBar {
		x = func(i int) float64 {
			return marginLeft + (float64(i)+0.5)*plotWidth/rows
		}
	}

	var b strings.Builder
	b.Grow(16 << 10)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-%s" data-mode="%s" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title" font-family="system-ui, sans-serif" font-size="14">`,
		m, m, chartWidth, chartHeight)
	fmt.Fprintf(&b, `<title id="chart-title">%s of columns a, b and c (%d rows)</title>`, m.label(), rows)

	// Grid and y axis labels.
	b.WriteString(`<g class="grid" stroke="#d5dbe3" stroke-width="1">`)
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%s" y2="%s"/>`, marginLeft, chartWidth-marginRight, chart.Num(y(t)), chart.Num(y(t)))
	}
	b.WriteString(`</g><g class="axis axis-y" fill="#445" text-anchor="end">`)
	for _, t := range ticks {
		fmt.Fprintf(&b, `<text x="%d" y="%s" dy="4">%s</text>`, marginLeft-6, chart.Num(y(t)), chart.TickLabel(t))
	}
	b.WriteString(`</g>`)

	// x axis: every other index, so labels stay legible on a phone.
	fmt.Fprintf(&b, `<g class="axis axis-x" fill="#445" text-anchor="middle"><line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#445"/>`,
		marginLeft, chartWidth-marginRight, chartHeight-marginBottom, chartHeight-marginBottom)
	for i := 0; i < rows; i += 2 {
		fmt.Fprintf(&b, `<text x="%s" y="%d">%d</text>`, chart.Num(x(i)), chartHeight-marginBottom+16, i)
	}
	fmt.Fprintf(&b, `</g><line class="zero" x1="%d" x2="%d" y1="%s" y2="%s" stroke="#445" stroke-width="1"/>`,
		marginLeft, chartWidth-marginRight, chart.Num(y(0)), chart.Num(y(0)))
	fmt.Fprintf(&b, `<line class="axis-line" x1="%d" x2="%d" y1="%d" y2="%d" stroke="#445"/>`,
		marginLeft, marginLeft, marginTop, chartHeight-marginBottom)

	for j, name := range columns {
		color := seriesColors[j]
		fmt.Fprintf(&b, `<g class="series series-%s" data-series="%s">`, name, name)
		switch m {
		case modeBar:
			band := float64(plotWidth) / rows
			w := band * 0.8 / float64(len(columns))
			for i := range rows {
				v := f[i][j]
				left := x(i) - band*0.4 + float64(j)*w
				top, bottom := y(max(v, 0)), y(min(v, 0))
				fmt.Fprintf(&b, `<rect class="point" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>`,
					chart.Num(left), chart.Num(top), chart.Num(w), chart.Num(max(bottom-top, 0.5)), color, pointTitle(name, i, v))
			}
		case modeArea, modeLine:
			pts := make([]string, rows)
			for i := range rows {
				pts[i] = chart.Num(x(i)) + "," + chart.Num(y(f[i][j]))
			}
			if m == modeArea {
				fmt.Fprintf(&b, `<path class="area" d="M%s,%s L%s L%s,%s Z" fill="%s" fill-opacity="0.22"/>`,
					chart.Num(x(0)), chart.Num(y(0)), strings.Join(pts, " L"), chart.Num(x(rows-1)), chart.Num(y(0)), color)
			}
			fmt.Fprintf(&b, `<polyline class="line" points="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"/>`,
				strings.Join(pts, " "), color)
			for i := range rows {
				fmt.Fprintf(&b, `<circle class="point" cx="%s" cy="%s" r="3" fill="%s"><title>%s</title></circle>`,
					chart.Num(x(i)), chart.Num(y(f[i][j])), color, pointTitle(name, i, f[i][j]))
			}
		}
		b.WriteString(`</g>`)
	}

	// Legend, top left above the plot.
	b.WriteString(`<g class="legend" fill="#1b2430" font-size="15">`)
	for j, name := range columns {
		lx := marginLeft + j*64
		fmt.Fprintf(&b, `<g class="legend-item" data-series="%s"><rect x="%d" y="14" width="14" height="14" rx="2" fill="%s"/><text x="%d" y="26">%s</text></g>`,
			name, lx, seriesColors[j], lx+20, name)
	}
	b.WriteString(`</g></svg>`)
	return b.String()
}

// bounds returns the smallest and largest value in f, widened to include 0
// so bars and areas have their baseline inside the plot.
func (f *frame) bounds() (lo, hi float64) {
	for i := range f {
		for _, v := range f[i] {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if hi-lo < 1e-9 {
		hi = lo + 1
	}
	return lo, hi
}

// pointTitle is the hover text of one data point.
func pointTitle(series string, i int, v float64) string {
	return fmt.Sprintf("%s[%d] = %.4f", series, i, v)
}
