package demoapp

import "fmt"

// mode is one of the dashboard's four display modes.
type mode string

// The display modes, as in the seed's sidebar radio.
const (
	modeLine  mode = "line"
	modeBar   mode = "bar"
	modeArea  mode = "area"
	modeTable mode = "table"
)

// defaultMode is shown when the request names none, like the seed's radio,
// whose first option is preselected.
const defaultMode = modeLine

// modes lists the modes in sidebar order with their labels.
var modes = []struct {
	Mode  mode
	Label string
}{
	{modeLine, "Line chart"},
	{modeBar, "Bar chart"},
	{modeArea, "Area chart"},
	{modeTable, "Table"},
}

// parseMode returns the mode named s; the empty string means the default.
func parseMode(s string) (mode, error) {
	if s == "" {
		return defaultMode, nil
	}
	for _, m := range modes {
		if string(m.Mode) == s {
			return m.Mode, nil
		}
	}
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return "", fmt.Errorf("unknown mode %q: want line, bar, area or table", s)
}

// label returns the human name of m.
func (m mode) label() string {
	for _, x := range modes {
		if x.Mode == m {
			return x.Label
		}
	}
	return string(m)
}

// render returns the HTML fragment for m: an SVG chart or the data table.
func (f *frame) render(m mode) string {
	if m == modeTable {
		return f.table()
	}
	return f.chart(m)
}
