package demoapp

import (
	"math/rand/v2"
	"sync"
)

// rows and columns give the shape of the demo data, the seed's
// pd.DataFrame(np.random.randn(20, 3), columns=["a", "b", "c"]).
const rows = 20

// columns names the three series, in display order.
var columns = [...]string{"a", "b", "c"}

// frame is a rows×3 table of standard normal samples.
type frame [rows][len(columns)]float64

// processFrame is generated once per process, so every page, every
// WebSocket and every New() show the same numbers, as one Streamlit run
// would until the script reruns.
var processFrame = sync.OnceValue(newRandomFrame)

// newRandomFrame draws rows×3 samples from N(0, 1), like numpy's randn.
func newRandomFrame() *frame {
	var f frame
	for i := range f {
		for j := range f[i] {
			f[i][j] = rand.NormFloat64()
		}
	}
	return &f
}

// processFragments holds the four rendered views of processFrame. The data
// never changes within a process, so each view is drawn once.
var processFragments = sync.OnceValue(func() map[mode]string {
	f := processFrame()
	out := make(map[mode]string, len(modes))
	for _, m := range modes {
		out[m.Mode] = f.render(m.Mode)
	}
	return out
})
