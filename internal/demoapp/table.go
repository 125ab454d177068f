package demoapp

import (
	"fmt"
	"strings"
)

// table renders f as an HTML table with a row index column and one column
// per series, numbers to four decimals as pandas would print them.
func (f *frame) table() string {
	var b strings.Builder
	b.Grow(4 << 10)
	b.WriteString(`<div class="table-wrap"><table id="data-table" class="data-table"><caption>Random numbers, 20 rows × 3 columns</caption><thead><tr><th scope="col"></th>`)
	for _, name := range columns {
		fmt.Fprintf(&b, `<th scope="col">%s</th>`, name)
	}
	b.WriteString(`</tr></thead><tbody>`)
	for i := range f {
		fmt.Fprintf(&b, `<tr><th scope="row">%d</th>`, i)
		for _, v := range f[i] {
			fmt.Fprintf(&b, `<td>%.4f</td>`, v)
		}
		b.WriteString(`</tr>`)
	}
	b.WriteString(`</tbody></table></div>`)
	return b.String()
}
