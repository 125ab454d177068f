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
	"io/fs"
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
	// apps are the backends' commands, run for the process's life; jwksURL
	// is where they fetch moat's keys (the internal listener's), set in Run.
	apps    apps
	jwksURL string
	// readFailed notes that the watcher could not read the file, so that
	// a file that stays unreadable is reported once, not every tick.
	readFailed bool

	// Ready, when set, receives the bound listener addresses once all
	// listeners accept connections and the apps moat runs answer (tests
	// and `moat demo` use it).
	Ready func(Addrs)
	// AppCommands, set before Run, run apps for backends as their command
	// would (`moat run`).
	AppCommands map[string]AppCommand
}

// Addrs are the addresses the listeners bound.
type Addrs struct {
	HTTPS, HTTP, Internal string
}

// New prepares a server for the configuration in cfg (already loaded from
// path). Nothing listens until Run.
func New(cfg *config.Config, path string, log *slog.Logger) (*Server, error) {
	s := &Server{log: log, path: path, apps: apps{log: log}}
	if data, err := config.ReadFile(path); err == nil {
		s.fileHash = sha256.Sum256(data)
	}
	proc, err := openProcess(cfg, log)
	if err != nil {
		return nil, err
	}
	s.process = proc
	// A change of who a user is, here or on another instance, re-checks
	// their WebSockets at once.
	proc.identity.OnChange = func(userID string) { go s.recheckSockets(userID) }
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

	// With https_addr off a platform in front terminates TLS: no
	// certificate, no HTTPS listener, nothing written to data_dir for them.
	var src *certs.Source
	var httpsLn net.Listener
	var err error
	if cfg.Server.HTTPS() {
		src, err = certs.New(ctx, cfg.TLS, s.certOptions(cfg, wd))
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		s.certs.Store(src)
		s.certKey = certKey(cfg, wd.routes.Hosts())
		defer func() { s.certs.Load().Close() }()
		httpsLn, err = net.Listen("tcp", cfg.Server.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("listen on server.https_addr %s: %w", cfg.Server.HTTPSAddr, err)
		}
	}
	closeAll := func(lns ...net.Listener) {
		for _, ln := range lns {
			if ln != nil {
				ln.Close()
			}
		}
	}
	internalLn, err := net.Listen("tcp", cfg.Server.InternalAddr)
	if err != nil {
		closeAll(httpsLn)
		return fmt.Errorf("listen on server.internal_addr %s: %w", cfg.Server.InternalAddr, err)
	}
	var httpLn net.Listener
	if cfg.Server.HTTPAddr != config.Off {
		httpLn, err = net.Listen("tcp", cfg.Server.HTTPAddr)
		if err != nil {
			closeAll(httpsLn, internalLn)
			return fmt.Errorf("listen on server.http_addr %s: %w", cfg.Server.HTTPAddr, err)
		}
	}

	if cfg.Server.ProxyProtocol {
		// Only peers in trusted_proxies may send a PROXY header; it names
		// the client as the connection's remote address.
		trusted := wd.clientIP.Trusted
		if httpsLn != nil {
			httpsLn = clientip.ProxyProtocolListener(httpsLn, trusted, cfg.Server.ReadHeaderTimeout.D())
		}
		if httpLn != nil {
			httpLn = clientip.ProxyProtocolListener(httpLn, trusted, cfg.Server.ReadHeaderTimeout.D())
		}
	}
	if httpsLn != nil {
		httpsLn = newLimitListener(httpsLn, cfg.Server.MaxConnsPerIP, wd.clientIP)
	}
	if httpLn != nil {
		httpLn = newLimitListener(httpLn, cfg.Server.MaxConnsPerIP, wd.clientIP)
	}
	// The apps moat runs learn where moat's keys are: the internal
	// listener, reachable on this machine only.
	s.mu.Lock()
	s.jwksURL = "http://" + internalLn.Addr().String() + jwksPath
	specs, err := s.appSpecs(cfg, s.jwksURL)
	s.mu.Unlock()
	if err != nil {
		closeAll(httpsLn, internalLn, httpLn)
		return err
	}
	wd.apps = specs

	internal := &http.Server{Handler: s.internalHandler(), ReadHeaderTimeout: 5 * time.Second}
	servers := []*http.Server{internal}
	errc := make(chan error, 3)
	go func() { errc <- internal.Serve(internalLn) }()
	addrs := Addrs{Internal: internalLn.Addr().String()}
	if httpsLn != nil {
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
		servers = append(servers, public)
		go func() { errc <- serveTLS(public, httpsLn) }()
		addrs.HTTPS = httpsLn.Addr().String()
	}
	if httpLn != nil {
		var handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s.serveHealth(w, r) {
				return
			}
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
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		servers = append(servers, plain)
		go func() { errc <- plain.Serve(httpLn) }()
		addrs.HTTP = httpLn.Addr().String()
	}

	go s.identity.Run(ctx)
	go s.usage.Run(ctx)
	wd.start(ctx)
	defer func() { s.world.Load().close() }()
	s.apps.reconcile(specs)
	defer s.apps.stopAll() // after the servers drained
	s.obtain(ctx, src)
	go s.watch(ctx)
	go s.checkSockets(ctx)
	go s.forwardSignals(ctx)
	s.apps.waitReady(ctx)
	tlsKind := "off"
	if src != nil {
		tlsKind = src.Kind()
	}
	s.log.Info("moat is serving", "https", addrs.HTTPS, "http", addrs.HTTP, "internal", addrs.Internal,
		"routes", len(cfg.Routes), "tls", tlsKind)
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

// obtain starts an ACME source's certificates now that the listeners
// answer the CA's challenges: stored ones load, missing ones are ordered
// (retried with backoff), all are renewed in time.
func (s *Server) obtain(ctx context.Context, src *certs.Source) {
	if src == nil {
		return // https_addr is off: no certificates
	}
	if err := src.Obtain(ctx); err != nil {
		s.log.Error("could not start ACME certificate management", "err", err)
	}
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

// checkSockets re-checks every open WebSocket periodically (recheckSockets):
// the fallback for a change the fan-out did not bring (a bus that was down)
// and for what ends without a change (max_age or idle_timeout reached). It
// also tells sign-in about frames on the sockets, so a session in use over
// its socket does not idle out.
func (s *Server) checkSockets(ctx context.Context) {
	tick := time.NewTicker(socketCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.recheckSockets("")
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
			data, err := config.ReadFile(s.path)
			s.mu.Lock()
			changed := err == nil && sha256.Sum256(data) != s.fileHash
			// A file that cannot be read (too large, not readable) is
			// reported once through Reload; a missing one is usually
			// an editor replacing it and is read again next tick.
			report := err != nil && !errors.Is(err, fs.ErrNotExist) && !s.readFailed
			s.readFailed = err != nil
			s.mu.Unlock()
			if changed || report {
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
	// The same bounded reader as check and serve (issue 12, finding 8).
	data, err := config.ReadFile(s.path)
	var cfg *config.Config
	if err == nil {
		s.fileHash = sha256.Sum256(data)
		cfg, err = config.Parse(s.path, data)
	}
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
	if cfg.Server.HTTPS() && key != s.certKey {
		src, err := certs.New(ctx, cfg.TLS, s.certOptions(cfg, next))
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
	s.apps.reconcile(next.apps)
	s.usage.Configure(cfg.Usage)
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
	a.BodyStallTimeout, b.BodyStallTimeout = 0, 0
	a.BodyMinRate, b.BodyMinRate = 0, 0
	if !reflect.DeepEqual(a, b) || cfg.DataDir != old.DataDir || cfg.Store != old.Store || cfg.Counters != old.Counters || cfg.SecretKeyFile != old.SecretKeyFile ||
		!reflect.DeepEqual(cfg.Tracing, old.Tracing) {
		return errors.New("server settings (but default_security_policy, public_url, log_level, hsts, body_stall_timeout and body_min_rate), data_dir, store, counters, secret_key_file and tracing change only with a restart: restart moat to apply them")
	}
	return nil
}

// certOptions is what the certificate source of cfg needs: the store keeps
// self-signed and ACME certificates for every instance, and ACME
// challenges are answered on moat's own listeners.
func (s *Server) certOptions(cfg *config.Config, wd *world) certs.Options {
	return certs.Options{
		Store:     s.store,
		Sealer:    s.identity.Key,
		Hosts:     wd.routes.Hosts(),
		HTTPAddr:  cfg.Server.HTTPAddr,
		HTTPSAddr: cfg.Server.HTTPSAddr,
		Logger:    s.log,
	}
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

// jwksPath serves moat's public keys on the internal listener too, where
// the apps moat runs on this machine fetch them (MOAT_JWKS_URL) without
// going through the public listener and its certificate.
const jwksPath = "/_moat/jwks.json"

// forwardSignals passes SIGUSR1 and SIGUSR2 on to the apps moat runs
// (SIGTERM and SIGINT stop them with moat; SIGHUP reloads moat).
func (s *Server) forwardSignals(ctx context.Context) {
	usr := make(chan os.Signal, 2)
	signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(usr)
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-usr:
			s.apps.signal(sig.(syscall.Signal))
		}
	}
}

// internalHandler serves /metrics, /healthz, /readyz and moat's public
// keys on the internal listener only, and the public health paths as every
// listener does.
func (s *Server) internalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(HealthzPath, func(w http.ResponseWriter, r *http.Request) { s.serveHealth(w, r) })
	mux.HandleFunc(ReadyzPath, func(w http.ResponseWriter, r *http.Request) { s.serveHealth(w, r) })
	mux.Handle("GET /metrics", metrics.Handler())
	mux.HandleFunc("GET "+jwksPath, func(w http.ResponseWriter, r *http.Request) {
		s.world.Load().auth.Handler().ServeHTTP(w, r)
	})
	// Profiles, like metrics, stay on the internal listener.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		backends, replicas, all := s.world.Load().ready()
		var buf bytes.Buffer
		_ = json.NewEncoder(&buf).Encode(map[string]any{"ready": all, "backends": backends, "replicas": replicas})
		w.Header().Set("Content-Type", "application/json")
		if !all {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write(buf.Bytes())
	})
	return mux
}
