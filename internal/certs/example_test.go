package certs_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/moat-dev/moat/internal/certs"
	"github.com/moat-dev/moat/internal/config"
)

// A server wires a Source into its two listeners: TLSConfig on HTTPS,
// HTTPHandler (redirects and ACME challenges) on plain HTTP.
func Example() {
	dataDir, _ := os.MkdirTemp("", "moat-example")
	defer os.RemoveAll(dataDir)

	src, err := certs.New(context.Background(), config.TLS{SelfSigned: true}, dataDir,
		[]string{"dash.example.com"}, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()

	https := &http.Server{Addr: ":8443", TLSConfig: src.TLSConfig()}
	plain := &http.Server{Addr: ":8080", Handler: src.HTTPHandler("8443")}
	_, _ = https, plain // ListenAndServeTLS("", "") and ListenAndServe in a real server

	fmt.Println(src.Kind(), https.TLSConfig.NextProtos)
	// Output: self_signed [h2 http/1.1]
}
