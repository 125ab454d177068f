package certs_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/certs"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
)

// A server wires a Source into its two listeners: TLSConfig on HTTPS,
// HTTPHandler (redirects and ACME challenges) on plain HTTP.
func Example() {
	dataDir, _ := os.MkdirTemp("", "moat-example")
	defer os.RemoveAll(dataDir)
	// The store shares the self-signed certificate with every instance
	// on it (SQLite here; PostgreSQL for many instances).
	st, err := store.Open(context.Background(), filepath.Join(dataDir, "moat.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	// What the store keeps is sealed with the instance key, which every
	// instance on the store holds (moat keys init).
	raw := make([]byte, instancekey.Size)
	_, _ = rand.Read(raw)
	key, err := instancekey.New(raw)
	if err != nil {
		fmt.Println(err)
		return
	}

	src, err := certs.New(context.Background(), config.TLS{SelfSigned: true}, certs.Options{
		Store: st, Sealer: key, Hosts: []string{"dash.example.com"},
		HTTPAddr: ":8080", HTTPSAddr: ":8443", Logger: slog.New(slog.DiscardHandler),
	})
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
