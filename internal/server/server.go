// Package server assembles moat: it loads the configuration, builds the
// routes, security policies, sign-in and proxies into one world, runs the
// public HTTPS and HTTP listeners and the internal one, reloads on SIGHUP or
// a changed file, and drains on SIGTERM.
package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moat-dev/moat/internal/certs"
	"github.com/moat-dev/moat/internal/clientip"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/metrics"
)

// watchInterval is how often the configuration file is checked for changes.
const watchInterval = 2 * time.Second

// socketCheckInterval is how often sessions holding WebSockets are checked.
var socketCheckInterval = 5 * time.Second

// Server is one running moat instance.
type Server struct {
	log   *slog.Logger
	path  string // configuration file, re-read on reload
	world atomic.Pointer[world]
	// process lives as long as moat runs: a reload keeps it.
	*process

	mu       sync.Mutex // serializes reloads
	certs    atomic.Pointer[certs.Source]
	certKey  string // what the current certs.Source was built from
	fileHash [32]byte

	// Ready, when set, receives the bound listener addresses once all
	// listeners accept connections (tests and `moat demo` use it).
	Ready func(Addrs)
}

// Addrs are the addresses the listeners bound.
type Addrs struct {
	HTTPS, HTTP, Internal string
}

// New prepares a server for the configuration in cfg (already loaded from
// path). Nothing listens until Run.
func New(cfg *config.Config, path string, log *slog.Logger) (*Server, error) {
	s := &Server{log: log, path: path}
	if data, err := os.ReadFile(path); err == nil {
		s.fileHash = sha256.Sum256(data)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	proc, err := openProcess(cfg, log)
	if err != nil {
		return nil, err
	}
	s.process = proc
	wd, err := s.build(cfg)
	if err != nil {
		s.close()
		return nil, err
	}
	s.world.Store(wd)
	return s, nil
}

// Run serves until ctx is cancelled or SIGTERM/SIGINT arrives, then drains:
// in-flight requests get the configured grace period and open WebSockets are
// closed with 1001 (going away).
func (s *Server) Run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	defer s.close()
	wd := s.world.Load()
	cfg := wd.cfg

	src, err := certs.New(ctx, cfg.TLS, cfg.DataDir, wd.routes.Hosts(), s.log)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	s.certs.Store(src)
	s.certKey = certKey(cfg, wd.routes.Hosts())
	defer func() { s.certs.Load().Close() }()

	httpsLn, err := net.Listen("tcp", cfg.Server.HTTPSAddr)
	if err != nil {
		return fmt.Errorf("listen on server.https_addr %s: %w", cfg.Server.HTTPSAddr, err)
	}
	internalLn, err := net.Listen("tcp", cfg.Server.InternalAddr)
	if err != nil {
		httpsLn.Close()
		return fmt.Errorf("listen on server.internal_addr %s: %w", cfg.Server.InternalAddr, err)
	}
	var httpLn net.Listener
	if cfg.Server.HTTPAddr != "off" {
		httpLn, err = net.Listen("tcp", cfg.Server.HTTPAddr)
		if err != nil {
			httpsLn.Close()
			internalLn.Close()
			return fmt.Errorf("listen on server.http_addr %s: %w", cfg.Server.HTTPAddr, err)
		}
	}

	if cfg.Server.ProxyProtocol {
		// Only peers in trusted_proxies may send a PROXY header; it names
		// the client as the connection's remote address.
		trusted := wd.clientIP.Trusted
		httpsLn = clientip.ProxyProtocolListener(httpsLn, trusted, cfg.Server.ReadHeaderTimeout.D())
		if httpLn != nil {
			httpLn = clientip.ProxyProtocolListener(httpLn, trusted, cfg.Server.ReadHeaderTimeout.D())
		}
	}
	httpsLn = newLimitListener(httpsLn, cfg.Server.MaxConnsPerIP, wd.clientIP)
	if httpLn != nil {
		httpLn = newLimitListener(httpLn, cfg.Server.MaxConnsPerIP, wd.clientIP)
	}
	tlsConf := src.TLSConfig()
	// Certificates follow reloads: always ask the current source.
	tlsConf.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return s.certs.Load().GetCertificate(hello)
	}
	public := &http.Server{
		Handler:           s,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	internal := &http.Server{Handler: s.internalHandler(), ReadHeaderTimeout: 5 * time.Second}
	servers := []*http.Server{public, internal}

	errc := make(chan error, 3)
	go func() { errc <- serveTLS(public, httpsLn) }()
	go func() { errc <- internal.Serve(internalLn) }()
	addrs := Addrs{HTTPS: httpsLn.Addr().String(), Internal: internalLn.Addr().String()}
	if httpLn != nil {
		var handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.certs.Load().HTTPHandler(portOf(addrs.HTTPS)).ServeHTTP(w, r)
		})
		if cfg.Server.HTTPMode == config.HTTPServe {
			handler = s
		}
		plain := &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
			IdleTimeout:       cfg.Server.IdleTimeout.D(),
			MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		}
		servers = append(servers, plain)
		go func() { errc <- plain.Serve(httpLn) }()
		addrs.HTTP = httpLn.Addr().String()
	}

	go s.identity.Run(ctx)
	wd.start(ctx)
	defer func() { s.world.Load().close() }()
	s.obtain(ctx, src)
	go s.watch(ctx)
	go s.checkSockets(ctx)
	s.log.Info("moat is serving", "https", addrs.HTTPS, "http", addrs.HTTP, "internal", addrs.Internal,
		"routes", len(cfg.Routes), "tls", src.Kind())
	if s.Ready != nil {
		s.Ready(addrs)
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.shutdown(servers)
			return err
		}
	}
	s.shutdown(servers)
	return nil
}

// obtain asks an ACME source for the routed hosts' certificates now, so the
// first visitor does not wait for issuance; failures are retried on demand.
func (s *Server) obtain(ctx context.Context, src *certs.Source) {
	if src.Kind() != "acme" {
		return
	}
	go func() {
		if err := src.Obtain(ctx); err != nil {
			s.log.Warn("could not obtain ACME certificates yet; moat retries at the first handshake", "err", err)
		}
	}()
}

func serveTLS(srv *http.Server, ln net.Listener) error {
	return srv.Serve(tls.NewListener(ln, srv.TLSConfig))
}

// shutdown stops accepting, lets in-flight requests finish within the grace
// period, and closes WebSockets with 1001 so clients reconnect elsewhere.
func (s *Server) shutdown(servers []*http.Server) {
	grace := s.world.Load().cfg.Server.ShutdownGrace.D()
	s.log.Info("moat is shutting down", "grace", grace.String(), "websockets", s.sockets.Count())
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.sockets.CloseAll(1001, "moat is shutting down")
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				s.log.Warn("requests still in flight at the end of the grace period were cut", "err", err)
				srv.Close()
			}
		}()
	}
	wg.Wait()
}

// checkSockets closes the WebSockets of sessions that ended without a
// revocation (max_age or idle_timeout reached, user disabled elsewhere), and
// tells sign-in about frames on the sockets, so a session in use over its
// socket does not idle out.
func (s *Server) checkSockets(ctx context.Context) {
	tick := time.NewTicker(socketCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		svc := s.world.Load().auth
		for session, lastActive := range s.sockets.Sessions() {
			if !svc.Alive(ctx, session, lastActive) && ctx.Err() == nil {
				s.sockets.CloseSession(session, websocketPolicyViolation, "session ended")
			}
		}
	}
}

// watch reloads on SIGHUP and when the configuration file's content changes.
func (s *Server) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			s.Reload(ctx, "signal")
		case <-tick.C:
			data, err := os.ReadFile(s.path)
			if err != nil {
				continue
			}
			s.mu.Lock()
			changed := sha256.Sum256(data) != s.fileHash
			s.mu.Unlock()
			if changed {
				s.Reload(ctx, "file changed")
			}
		}
	}
}

// Reload loads the configuration file again and, if it is valid and builds,
// swaps it in. A broken file is logged and the running one keeps serving.
func (s *Server) Reload(ctx context.Context, why string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	if err == nil {
		s.fileHash = sha256.Sum256(data)
	}
	cfg, err := config.Parse(s.path, data)
	if err == nil {
		err = s.checkStatic(cfg)
	}
	var next *world
	if err == nil {
		next, err = s.build(cfg)
	}
	if err != nil {
		metrics.ConfigReloads.WithLabelValues("error").Inc()
		s.log.Error("configuration reload failed; the previous configuration keeps serving", "why", why, "err", err.Error())
		return err
	}
	key := certKey(cfg, next.routes.Hosts())
	if key != s.certKey {
		src, err := certs.New(ctx, cfg.TLS, cfg.DataDir, next.routes.Hosts(), s.log)
		if err != nil {
			next.close()
			metrics.ConfigReloads.WithLabelValues("error").Inc()
			s.log.Error("configuration reload failed; the previous configuration keeps serving", "why", why, "err", "tls: "+err.Error())
			return err
		}
		s.certs.Swap(src).Close()
		s.certKey = key
		s.obtain(ctx, src)
	}
	next.start(ctx)
	s.world.Swap(next).close()
	metrics.ConfigReloads.WithLabelValues("ok").Inc()
	for _, w := range cfg.Warnings {
		s.log.Warn("configuration warning", "warning", w)
	}
	s.log.Info("configuration reloaded", "why", why, "routes", len(cfg.Routes))
	return nil
}

// checkStatic refuses a reload that changes what only a restart can change.
func (s *Server) checkStatic(cfg *config.Config) error {
	old := s.world.Load().cfg
	// The listeners are built once, so the server block is fixed but for
	// what each request reads from the current world.
	a, b := old.Server, cfg.Server
	a.DefaultSecurityPolicy, b.DefaultSecurityPolicy = "", ""
	a.PublicURL, b.PublicURL = "", ""
	a.LogLevel, b.LogLevel = "", ""
	a.HSTS, b.HSTS = nil, nil
	if !reflect.DeepEqual(a, b) || cfg.DataDir != old.DataDir || cfg.Store != old.Store || cfg.Counters != old.Counters ||
		!reflect.DeepEqual(cfg.Tracing, old.Tracing) {
		return errors.New("server settings (but default_security_policy, public_url, log_level and hsts), data_dir, store, counters and tracing change only with a restart: restart moat to apply them")
	}
	return nil
}

func certKey(cfg *config.Config, hosts []string) string {
	b, _ := json.Marshal(struct {
		TLS   config.TLS
		Hosts []string
	}{cfg.TLS, hosts})
	return string(b)
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// internalHandler serves /metrics, /healthz and /readyz on the internal
// listener only.
func (s *Server) internalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler())
	// Profiles, like metrics, stay on the internal listener.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		states, all := s.world.Load().ready()
		var buf bytes.Buffer
		_ = json.NewEncoder(&buf).Encode(map[string]any{"ready": all, "backends": states})
		w.Header().Set("Content-Type", "application/json")
		if !all {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write(buf.Bytes())
	})
	return mux
}
