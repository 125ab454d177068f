package admin_test

import (
	"context"
	"log"
	"net/http"
	"path/filepath"
	"time"

	"github.com/moat-dev/moat/internal/account"
	"github.com/moat-dev/moat/internal/admin"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/store"
)

// Example mounts the admin console and the account page the way the
// server does: behind the sign-in's Identify, which finds the session
// (request.From(r).User). Revocations reach open WebSockets through
// auth.Process.OnRevoke, which the sign-in calls for every revoked session
// it sees in the store.
func Example() {
	cfg := &config.Config{DataDir: filepath.Join("/var/lib/moat")}
	cfg.Identity.AdminGroup = config.DefaultAdminGroup
	cfg.Identity.AdminReauth = config.Duration(15 * time.Minute)
	st, err := store.Open(context.Background(), cfg.StoreDSN())
	if err != nil {
		log.Fatal(err)
	}
	key, err := auth.InstanceKey(context.Background(), cfg, st) // once per process
	if err != nil {
		log.Fatal(err)
	}
	proc, err := auth.NewProcess(st, key, nil) // outlives every reload
	if err != nil {
		log.Fatal(err)
	}
	signIn, err := auth.New(cfg, proc) // one per configuration
	if err != nil {
		log.Fatal(err)
	}
	console, err := admin.New(cfg, st, admin.Options{CSRF: proc.CSRF, MFA: proc.MFA, Throttle: proc.Throttle, Limiter: proc.Limiter, TokenUser: proc.TokenUser,
		Ended: proc.Ended})
	if err != nil {
		log.Fatal(err)
	}
	acct, err := account.New(cfg, st, account.Options{CSRF: proc.CSRF, MFA: proc.MFA, Passkeys: proc.Passkeys, Limiter: proc.Limiter, SessionChanged: proc.ReloadSession,
		Ended: proc.Ended})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/_moat/", signIn.Identify(signIn.Handler()))
	mux.Handle(admin.Prefix, signIn.Identify(console))
	mux.Handle(account.Prefix, signIn.Identify(acct))
	mux.Handle(account.Prefix+"/", signIn.Identify(acct))
	_ = http.ListenAndServeTLS(":443", "cert.pem", "key.pem", mux)
}
