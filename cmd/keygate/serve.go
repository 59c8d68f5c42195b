package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/metrics"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/server"
	"github.com/keygate/keygate/internal/source"
)

type serveConfig struct {
	policy         string
	grpcAddr       string
	httpAddr       string
	adminAddr      string
	httpPathPrefix string
	httpOrigin     string
	httpServer     string
	logFormat      string
	logLevel       string
	decisionLog    string
	cacheSize      int
	cacheNegTTL    time.Duration
	drainTimeout   time.Duration
	shutdownDelay  time.Duration
	maxStreams     uint
	maxRecvMsg     int
	recvBudget     int
	idleTimeout    time.Duration
	adminPprof     bool
	kube           kubeFlags
	api            apiFlags
	rateLimit      rateLimitFlags
	sessions       sessionFlags
	sessionStore   sessionStoreFlags
}

func serveFlags(stderr io.Writer) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("keygate serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.policy, "policy", "", "policy file, or directory of policy fragments (*.yaml, *.yml, *.json); reloaded on change")
	fs.StringVar(&c.grpcAddr, "grpc-addr", ":9001", "listen address for ext_authz gRPC (envoy.service.auth.v3) and grpc.health.v1")
	fs.StringVar(&c.httpAddr, "http-addr", ":9002", "listen address for ext_authz HTTP (Envoy http_service); empty disables it")
	fs.StringVar(&c.adminAddr, "admin-addr", ":9003", "listen address for /healthz and /readyz; empty disables it")
	fs.StringVar(&c.httpPathPrefix, "http-path-prefix", "", "Envoy http_service path_prefix to strip before matching")
	fs.StringVar(&c.httpOrigin, "http-original-request", "envoy", "where the HTTP adapter reads the original method and path: envoy (the request line: Envoy http_service), x-original (nginx auth_request), x-forwarded (Caddy, Traefik), or auto (X-Original-URI, else X-Forwarded-Uri, else the request line: a client-sent header can then choose the path unless the proxy strips it)")
	fs.StringVar(&c.httpServer, "http-server", "fasthttp", httpServerUsage)
	fs.StringVar(&c.logFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.decisionLog, "decision-log", "denied", "which decisions to log: all, denied or off")
	fs.IntVar(&c.cacheSize, "cache-size", cache.DefaultSize, "credential resolution cache entries")
	fs.DurationVar(&c.cacheNegTTL, "cache-negative-ttl", cache.DefaultNegativeTTL, "how long an unknown credential is remembered")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 15*time.Second, "on SIGTERM, how long in-flight checks may take to finish")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 0, "on SIGTERM, how long to keep answering checks while reporting not ready, so load balancers stop sending first")
	fs.BoolVar(&c.adminPprof, "admin-pprof", false, "serve Go's /debug/pprof/ on the admin address")
	fs.UintVar(&c.maxStreams, "grpc-max-concurrent-streams", 1000, "gRPC max concurrent streams per connection")
	// Above Envoy's own ceiling for request headers (8 MiB), so every check
	// Envoy can build gets a decision, not an error that failure_mode_allow
	// would let through.
	fs.IntVar(&c.maxRecvMsg, "grpc-max-recv-msg-size", 10<<20, "largest CheckRequest accepted, in bytes")
	// The size of one message does not bound memory: many at once do.
	fs.IntVar(&c.recvBudget, "grpc-recv-budget", 0, "bytes of gRPC requests read and decided at once, across all connections: each call reserves --grpc-max-recv-msg-size of it, and calls wait in turn while it is spent; 0: 40 MiB, or one message per CPU (GOMAXPROCS) if that is more")
	fs.DurationVar(&c.idleTimeout, "http-idle-timeout", 3*time.Minute, "how long the HTTP and admin listeners keep an idle keep-alive connection open; keep proxies' upstream idle timeouts below it")
	c.kube.register(fs)
	c.api.register(fs)
	c.rateLimit.register(fs)
	c.sessions.register(fs)
	c.sessionStore.register(fs)
	return fs, c
}

func serve(args []string, stderr io.Writer) error {
	fs, cfg := serveFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.kube.checkPolicySource(cfg.policy); err != nil {
		return err
	}
	mode, err := server.ParseDecisionLogMode(cfg.decisionLog)
	if err != nil {
		return err
	}
	origin, err := server.ParseOrigin(cfg.httpOrigin)
	if err != nil {
		return err
	}
	if err := checkHTTPServer(cfg.httpServer); err != nil {
		return err
	}
	if cfg.recvBudget == 0 {
		cfg.recvBudget = defaultRecvBudget(cfg.maxRecvMsg, runtime.GOMAXPROCS(0))
	}
	budget, err := server.NewRecvBudget(int64(cfg.recvBudget), int64(cfg.maxRecvMsg))
	if err != nil {
		return fmt.Errorf("--grpc-recv-budget: %w", err)
	}
	if cfg.idleTimeout <= 0 { // net/http would keep idle connections for ever
		return fmt.Errorf("--http-idle-timeout must be positive, not %v", cfg.idleTimeout)
	}
	log, err := newLogger(cfg.logFormat, cfg.logLevel, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	memLimit, err := setMemoryLimit()
	if err != nil {
		log.Info("no Go memory limit from a container limit", zap.Error(err))
	}

	limiter, failOpen, err := cfg.rateLimit.open(log.Named("ratelimit"))
	if err != nil {
		return err
	}
	if limiter != nil {
		defer limiter.Close()
	}

	store := source.NewStore()
	src, err := openPolicySource(cfg.policy, &cfg.kube, store, log.Named("policy"))
	if err != nil {
		return err
	}
	creds, err := cache.New(cfg.cacheSize, cfg.cacheNegTTL)
	if err != nil {
		return err
	}
	// A new snapshot makes every cached resolution stale; start afresh so
	// old generations (and their principals) are not kept.
	store.OnPublish(func(*policy.Snapshot) { creds.Reset() })
	reg := prometheus.NewRegistry()
	if err := cfg.sessionStore.open(reg, log.Named("session_store")); err != nil { // sessionstore.go
		return err
	}
	defer cfg.sessionStore.close()
	// With the session store on, the API makes opaque sessions: no signing key is needed.
	signer, verifier, err := cfg.sessions.open(cfg.api.addr != "" && cfg.sessionStore.store == nil, reg, log.Named("session"))
	if err != nil {
		return err
	}
	defer verifier.Close()
	verifier.Sync(store.Current()) // the first snapshot was published before this listener
	store.OnPublish(verifier.Sync)
	decider := authz.New(store, creds, authz.WithSessionVerifier(verifier), authz.WithRateLimiter(limiter, failOpen), cfg.sessionStore.authzOption())
	store.YieldWhile(decider.Busy)
	observer, err := metrics.New(reg, metrics.Config{Store: store, Cache: creds, Source: cfg.kube.sourceKind(), RateLimiter: limiter})
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	dlog := server.NewDecisionLog(log, mode)
	healthState := server.NewHealth(store)
	healthState.Report("session_issuers", func() any { return verifier.Stats() }) // key sets and JWKS fetches, never a key
	cfg.sessionStore.report(healthState)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	grpcLis, err := net.Listen("tcp", cfg.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen grpc: %w", err)
	}
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_grpc_recv_calls_reading",
			Help: "gRPC calls holding a share of --grpc-recv-budget: reading, deciding and answering their request."},
			func() float64 { return float64(budget.InUse()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_grpc_recv_calls_waiting",
			Help: "gRPC calls waiting for a share of --grpc-recv-budget before their request is read."},
			func() float64 { return float64(budget.Waiting()) }),
	} {
		if err := reg.Register(g); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	grpcSrv := grpc.NewServer(grpc.ForceServerCodecV2(server.Codec{}),
		grpc.MaxConcurrentStreams(uint32(cfg.maxStreams)), grpc.MaxRecvMsgSize(cfg.maxRecvMsg),
		// Static windows: a call waiting for the budget has at most one
		// stream window of its message here. gRPC's default grows the
		// windows with the measured bandwidth, up to 16 MiB a stream.
		grpc.StaticStreamWindowSize(64<<10), grpc.StaticConnWindowSize(1<<20))
	// Every service's handlers reserve from the budget before they read.
	grpcReg := budget.Registrar(grpcSrv)
	server.NewAuthServer(decider, dlog, observer).Register(grpcReg)
	grpcHealth := health.NewServer()
	healthpb.RegisterHealthServer(grpcReg, grpcHealth)
	reflection.Register(grpcReg.(reflection.GRPCServer))
	grpcHealth.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	grpcHealth.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	var httpSrvs []httpServing
	listenHTTP := func(name, addr string, h http.Handler) (net.Listener, *http.Server, error) {
		if addr == "" {
			return nil, nil, nil
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen %s: %w", name, err)
		}
		// IdleTimeout: without it an idle keep-alive connection stays open
		// for ever, and enough of them exhaust the file descriptors.
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: cfg.idleTimeout,
			MaxHeaderBytes: 96 << 10, ErrorLog: zap.NewStdLog(log.Named(name))}
		srv.DisableGeneralOptionsHandler = true // net/http would answer `OPTIONS *` with 200 itself: every request is keygate's to decide
		httpSrvs = append(httpSrvs, srv)
		return lis, srv, nil
	}
	httpLis, httpSrv, err := listenAuthzHTTP(cfg, server.NewHTTPAuth(decider, dlog, cfg.httpPathPrefix, origin, observer), log, &httpSrvs, listenHTTP) // httpserver.go
	if err != nil {
		return err
	}
	adminLis, adminSrv, err := listenHTTP("admin", cfg.adminAddr, server.AdminHandler(healthState, adminExtras(reg, cfg.adminPprof)))
	if err != nil {
		return err
	}
	var apiLis net.Listener
	var apiSrv *http.Server
	if cfg.api.addr != "" {
		h, st, err := apiHandler(cfg, store, decider, signer, reg, log.Named("api"))
		if err != nil {
			return err
		}
		if apiLis, apiSrv, err = listenHTTP("api", cfg.api.addr, h); err != nil {
			return err
		}
		log.Info("management API serving", zap.String("api_addr", addrOf(apiLis)), zap.String("writes_to", st.String()))
	}

	snap := store.Current()
	counts := snap.Counts()
	log.Info("keygate started",
		zap.String("version", version),
		zap.String("policy", snap.Source),
		zap.Uint64("generation", snap.Generation),
		zap.Int("api_keys", counts.APIKeys), zap.Int("sessions", counts.Sessions),
		zap.Int("endpoints", counts.Endpoints), zap.Int("groups", counts.Groups),
		zap.String("grpc_addr", grpcLis.Addr().String()),
		zap.String("http_addr", addrOf(httpLis)), zap.String("admin_addr", addrOf(adminLis)), zap.String("api_addr", addrOf(apiLis)),
		zap.String("decision_log", cfg.decisionLog), zap.String("http_server", cfg.httpServer),
		zap.Int64("grpc_recv_budget", budget.Bound()), zap.String("go_memory_limit", memLimit))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return src.Run(gctx) })
	g.Go(func() error { return cfg.sessionStore.watch(gctx, creds) })
	g.Go(func() error {
		server.ReturnMemory(gctx, budget, time.Second, func(before, after uint64) {
			log.Debug("returned memory to the OS after a burst", zap.Uint64("held_bytes", before), zap.Uint64("now_bytes", after))
		})
		return nil
	})
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				log.Info("SIGHUP: reloading policy")
				src.Trigger()
			}
		}
	})
	g.Go(func() error {
		if err := grpcSrv.Serve(grpcLis); err != nil {
			return fmt.Errorf("serve grpc: %w", err)
		}
		return nil
	})
	for _, p := range []struct {
		lis net.Listener
		srv httpServing
	}{{httpLis, httpSrv}, {adminLis, adminSrv}, {apiLis, apiSrv}} {
		if p.lis == nil { // disabled; srv may hold a nil *http.Server
			continue
		}
		g.Go(func() error {
			if err := p.srv.Serve(p.lis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", p.lis.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: not ready, then draining in-flight checks",
			zap.Duration("shutdown_delay", cfg.shutdownDelay), zap.Duration("drain_timeout", cfg.drainTimeout))
		healthState.Drain()
		grpcHealth.Shutdown() // health checks now answer NOT_SERVING
		// Keep answering while Kubernetes and Envoy notice the readiness
		// change; stopping at once would refuse checks still being routed here.
		time.Sleep(cfg.shutdownDelay)
		drainCtx, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout)
		defer cancel()
		done := make(chan struct{})
		go func() { grpcSrv.GracefulStop(); close(done) }()
		for _, s := range httpSrvs {
			if s != adminSrv {
				_ = s.Shutdown(drainCtx)
			}
		}
		select {
		case <-done:
		case <-drainCtx.Done():
			grpcSrv.Stop()
		}
		if adminSrv != nil {
			_ = adminSrv.Shutdown(drainCtx)
		}
		return nil
	})
	err = g.Wait()
	log.Info("keygate stopped")
	return err
}

// adminExtras are the admin port's handlers beyond health: /metrics, and
// pprof when asked for (never on the serving ports).
func adminExtras(reg *prometheus.Registry, pprofOn bool) map[string]http.Handler {
	h := map[string]http.Handler{
		"GET /metrics": promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
	}
	if pprofOn {
		h["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		h["/debug/pprof/cmdline"] = http.HandlerFunc(pprof.Cmdline)
		h["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		h["/debug/pprof/symbol"] = http.HandlerFunc(pprof.Symbol)
		h["/debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
	}
	return h
}

// defaultRecvBudget is 40 MiB (four 10 MiB messages), or one message per
// CPU if that is more: every call holds a share while it is decided, so a
// budget of fewer messages than CPUs would leave CPUs idle behind it. Go
// sizes GOMAXPROCS from the container's CPU limit, which is sized with its
// memory.
func defaultRecvBudget(maxMsg, procs int) int {
	return max(40<<20, procs*maxMsg)
}

// setMemoryLimit sets Go's memory limit (GOMEMLIMIT) to 90% of the
// container's, read from the cgroup, so that the collector works harder as
// the heap nears the limit instead of the kernel killing the process at
// it. An explicit GOMEMLIMIT wins, and AUTOMEMLIMIT sets the ratio ("off"
// disables it). It returns the limit in force, for the start-up log.
func setMemoryLimit() (string, error) {
	limit, err := memlimit.Set(memlimit.WithProvider(memlimit.FromCgroup))
	if limit = debug.SetMemoryLimit(-1); limit == math.MaxInt64 {
		return "off", err
	}
	return strconv.FormatInt(limit, 10), err
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}
