package demoapp

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/coder/websocket"
)

func BenchmarkRender(b *testing.B) {
	f := processFrame()
	for _, m := range modes {
		b.Run(string(m.Mode), func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n = len(f.render(m.Mode))
			}
			b.ReportMetric(float64(n), "bytes/fragment")
		})
	}
}

func BenchmarkWebSocketModeSwitch(b *testing.B) {
	srv := httptest.NewServer(New())
	b.Cleanup(srv.Close)
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, wsURL(srv.URL), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(1 << 20)
	msgs := [][]byte{[]byte(`{"mode":"line"}`), []byte(`{"mode":"bar"}`), []byte(`{"mode":"area"}`), []byte(`{"mode":"table"}`)}
	i := 0
	for b.Loop() {
		if err := c.Write(ctx, websocket.MessageText, msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
