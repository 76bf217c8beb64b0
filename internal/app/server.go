package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"warmpool/internal/admin"
	"warmpool/internal/config"
	"warmpool/internal/learn"
	"warmpool/internal/pool"
	"warmpool/internal/proxy"
	"warmpool/internal/telemetry"
)

// Server is one warmpool instance. New has no side effects; Start listens and spawns workers.
type Server struct {
	cfg   *config.Config
	src   *config.Loaded
	log   *slog.Logger
	bal   *proxy.Balancer
	pool  *pool.Pool
	front *proxy.Front
	admin *admin.Handler

	metrics *telemetry.Metrics
	tracer  trace.Tracer             // nil: tracing off
	tp      trace.TracerProvider     // given by WithTracerProvider; not shut down by Close
	ownTP   *sdktrace.TracerProvider // made from telemetry.otlp_endpoint; flushed by Close
	history *telemetry.History
	access  *telemetry.AccessLog
	check   *telemetry.WarmupCheck
	learner *learn.Learner

	frontSrv, adminSrv *http.Server
	lean               *proxy.Server // the front (frontSrv takes what it hands off, and TLS)
	frontLn, adminLn   net.Listener
	socketDir          string
	ownSocketDir       bool
	workerEnv          []string // added to warmpool's own environment for the workers
	serveErr           chan error
	wg                 sync.WaitGroup
}

// Option adjusts a Server.
type Option func(*Server)

// withWorkerEnv adds variables to every worker's environment (Run's guard mark).
func withWorkerEnv(kv ...string) Option {
	return func(s *Server) { s.workerEnv = append(s.workerEnv, kv...) }
}

// WithTracerProvider traces with tp instead of telemetry.otlp_endpoint (tests use an
// in-memory exporter); the caller shuts it down.
func WithTracerProvider(tp trace.TracerProvider) Option { return func(s *Server) { s.tp = tp } }

// New wires a server for a validated configuration.
func New(l *config.Loaded, log *slog.Logger, opts ...Option) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := &l.Config
	s := &Server{cfg: cfg, src: l, log: log, serveErr: make(chan error, 2)}
	for _, o := range opts {
		o(s)
	}
	s.bal = proxy.NewBalancer(cfg.Proxy.QueueSize, cfg.Proxy.QueueTimeout.Duration)
	return s
}

// Start creates the socket directory, binds both listeners, starts the pool and serves.
func (s *Server) Start() (err error) {
	defer func() {
		if err != nil {
			s.releaseStartResources()
		}
	}()
	cfg := s.cfg
	token, err := s.src.AdminToken()
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	s.socketDir = cfg.Worker.SocketDir
	if s.socketDir == "" {
		dir, err := makeSocketDir(s.log)
		if err != nil {
			return err
		}
		s.socketDir, s.ownSocketDir = dir, true
	} else if err := os.MkdirAll(s.socketDir, 0o700); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if s.access, err = telemetry.OpenAccessLog(cfg.Telemetry.AccessLog, cfg.Telemetry.AccessLogFormat); err != nil {
		return err
	}
	// No TCP keep-alive probes on client connections (as nginx): the idle timeout already ends
	// connections that went quiet, and the probes' setup cost three syscalls per connection.
	frontCfg := net.ListenConfig{KeepAlive: -1}
	if s.frontLn, err = frontCfg.Listen(context.Background(), "tcp", cfg.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		return fmt.Errorf("admin_listen: %w", err)
	}
	if s.tp == nil && cfg.Telemetry.OTLPEndpoint != "" {
		if s.ownTP, err = telemetry.NewTracerProvider(context.Background(), cfg.Telemetry.OTLPEndpoint, cfg.Telemetry.ServiceName, cfg.Telemetry.TraceSampleRatio); err != nil {
			return err
		}
		s.tp = s.ownTP
	}
	if s.tp != nil {
		s.tracer = s.tp.Tracer(telemetry.TracerName)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = telemetry.NewMetrics(reg)
	s.history = telemetry.NewHistory()
	s.metrics.SetWarmupEnabled(cfg.Warmup.Enabled)
	s.learner = learn.New(learn.Options{Python: cfg.Worker.IsPython(), StatePath: learn.StatePath(cfg), Identity: learn.AppIdentity(cfg),
		SocketDir: s.socketDir, IsWorker: func(pid int) bool { return s.pool.HasWorker(pid) }, OnRebuild: func() { s.pool.Rebuild() },
		Logger: s.log})
	reg.MustRegister(s.learner)
	s.check = s.newWarmupCheck(cfg)
	env := config.ChildEnv(append(os.Environ(), s.workerEnv...)) // warmpool's own, less its secrets
	s.pool = pool.New(pool.Options{Config: cfg, Rotation: s.bal, SocketDir: s.socketDir, Logger: s.log, Env: env,
		WarmupSummary: s.src.WarmupSummary(), Metrics: s.metrics, Tracer: s.tracer, Learner: s.learner})
	s.metrics.SetInFlight(s.bal.InFlight)
	s.metrics.SetWorkerStates(func() map[string]int {
		counts := map[string]int{}
		for _, w := range s.pool.Status().Workers {
			counts[w.State.String()]++
		}
		return counts
	})
	s.front = proxy.NewFront(s.bal, s.frontOptions(cfg))
	s.admin = admin.New(s.pool, cfg.MinReady, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}), s.history,
		admin.Access{Token: token, MetricsOpen: cfg.AdminMetricsOpen, Pprof: cfg.AdminPprof})
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.frontSrv = &http.Server{Handler: s.front, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, ErrorLog: errLog,
		MaxHeaderBytes: proxy.HTTPMaxHeaderBytes(cfg.Proxy.MaxHeaderBytes.Bytes)}
	s.lean = proxy.NewServer(s.front, s.frontSrv)
	// Keep-alive connections to the admin listener end when idle, as the front's do.
	s.adminSrv = &http.Server{Handler: s.admin, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second, ErrorLog: errLog}
	if err := s.learner.Start(); err != nil {
		return err
	}
	if err := s.pool.Start(); err != nil {
		return errors.Join(err, s.learner.Close(context.Background()))
	}
	s.front.Start()
	s.wg.Go(func() {
		var err error
		if cfg.TLSCert == "" {
			err = s.lean.Serve(s.frontLn)
		} else {
			err = s.lean.ServeTLS(s.frontLn, cfg.TLSCert, cfg.TLSKey)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			s.serveErr <- fmt.Errorf("front: %w", err)
		}
	})
	s.wg.Go(func() {
		if err := s.adminSrv.Serve(s.adminLn); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr <- fmt.Errorf("admin: %w", err)
		}
	})
	s.log.Info("warmpool started", "listen", s.frontLn.Addr().String(), "admin", s.adminLn.Addr().String(),
		"workers", cfg.Worker.Count, "concurrency", cfg.Worker.Concurrency, "recycling", recyclingPlan(cfg),
		"warmup", s.src.WarmupSummary(), "learned_state", s.learner.Status().StateFile)
	return nil
}

func (s *Server) frontOptions(cfg *config.Config) proxy.Options {
	trusted, _ := cfg.Proxy.TrustedPrefixes() // the config's rules refused bad entries
	return proxy.Options{
		TrustedProxies:        trusted,
		PassUnderscoreHeaders: cfg.Proxy.UnderscoreHeaders == config.UnderscorePass,
		RequestTimeout:        cfg.Proxy.RequestTimeout.Duration,
		SendTimeout:           cfg.Proxy.SendTimeout.Duration,
		ClientBodyTimeout:     cfg.Proxy.ClientBodyTimeout.Duration,
		MaxBodySize:           cfg.Proxy.MaxBodySize.Bytes,
		MaxBufferedResponse:   cfg.Proxy.MaxBufferedResponse.Bytes,
		Harakiri:              cfg.Proxy.Harakiri.Duration,
		OnStuck:               s.pool.ReportStuck,
		OnHung:                s.pool.ReportHung,
		OnRefusing:            s.pool.ReportRefusing,
		Unavailable:           s.pool.Unavailable,
		AllowedHosts:          config.CompileHosts(cfg.Proxy.AllowedHosts),
		Observer:              &telemetry.Recorder{Metrics: s.metrics, Check: s.check, Access: s.access, History: s.history},
		OnHandoff:             s.metrics.HandedOff,
		OnProtocolError:       s.metrics.WorkerProtocolError,
		ColdWindow:            cfg.Telemetry.ColdWindow,
		Tracer:                s.tracer,
		Logger:                s.log,
	}
}

// newWarmupCheck is the warm-up check of cfg; with warmup.learn, it feeds the learner.
func (s *Server) newWarmupCheck(cfg *config.Config) *telemetry.WarmupCheck {
	var first func(*telemetry.Request, time.Duration, bool)
	if cfg.Warmup.Learn {
		first = s.learner.ObserveFirst
	}
	return telemetry.NewWarmupCheck(cfg.Telemetry.WarmupCheckFactor, cfg.Telemetry.WarmupCheckFloor.Duration, s.log, s.metrics.WarmupIneffective, first)
}

// recyclingPlan states the recycle triggers in force.
func recyclingPlan(cfg *config.Config) string {
	w := &cfg.Worker
	var on []string
	if w.MaxRequests > 0 {
		on = append(on, fmt.Sprintf("max_requests %d (+0..%d)", w.MaxRequests, w.MaxRequestsJitter))
	}
	if w.MaxLifetime.Duration > 0 {
		on = append(on, fmt.Sprintf("max_lifetime %s (+0..%s)", w.MaxLifetime.Duration, w.MaxLifetimeJitter.Duration))
	}
	if w.MaxRSS.Bytes > 0 {
		on = append(on, "max_rss "+w.MaxRSS.String())
	}
	if len(on) == 0 {
		return "off"
	}
	return strings.Join(on, ", ") + fmt.Sprintf("; surge %d", w.Surge)
}

// Apply puts a new, validated configuration in force and rolls the workers to it, warm-first.
// A change to a setting bound at start is refused whole, naming the setting.
func (s *Server) Apply(l *config.Loaded) error {
	cfg := &l.Config
	if errs := l.RestartNeeded(s.cfg); len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.cfg, s.src = cfg, l
	s.metrics.SetWarmupEnabled(cfg.Warmup.Enabled)
	s.check = s.newWarmupCheck(cfg)
	s.bal.SetQueue(cfg.Proxy.QueueSize, cfg.Proxy.QueueTimeout.Duration)
	s.front.SetOptions(s.frontOptions(cfg))
	s.admin.SetMinReady(cfg.MinReady)
	s.pool.Reconfigure(cfg, l.WarmupSummary())
	return nil
}

// FrontAddr is the bound public address.
func (s *Server) FrontAddr() string { return s.frontLn.Addr().String() }

// AdminAddr is the bound admin address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// SocketDir is the workers' socket directory, and whether warmpool made it (and removes it).
func (s *Server) SocketDir() (string, bool) { return s.socketDir, s.ownSocketDir }

// Pool is the server's worker pool.
func (s *Server) Pool() *pool.Pool { return s.pool }

// Queued is how many requests wait for a free worker.
func (s *Server) Queued() int { return s.bal.Queued() }

// Errors reports a listener that stopped serving on its own.
func (s *Server) Errors() <-chan error { return s.serveErr }

// Reload rolls the workers to a new generation, warm-first.
func (s *Server) Reload() { s.pool.Reload() }

// Close stops accepting, lets in-flight requests finish, stops every worker and waits for all
// goroutines. When ctx ends first, what is left is cut off and the workers are killed.
func (s *Server) Close(ctx context.Context) error {
	if s.pool == nil {
		return nil
	}
	s.admin.SetDraining()
	s.log.Info("server draining", "in_flight", s.bal.InFlight(), "queued", s.bal.Queued())
	var errs []error
	if err := s.shutdownFront(ctx); err != nil {
		errs = append(errs, fmt.Errorf("front shutdown: %w", err))
	}
	if err := s.front.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("requests past their timeout: %w", err))
	}
	if err := s.pool.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("pool: %w", err))
	}
	if err := s.learner.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("saving what was learned: %w", err))
	}
	if err := s.adminSrv.Shutdown(ctx); err != nil {
		s.adminSrv.Close()
	}
	s.wg.Wait()
	s.removeSocketDir()
	if err := s.access.Close(); err != nil {
		errs = append(errs, err)
	}
	if s.ownTP != nil {
		// Flush the last spans (drains, exits) to the collector.
		if err := s.ownTP.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("trace export: %w", err))
		}
	}
	return errors.Join(errs...)
}

// shutdownFront stops the front listener's server gracefully.
func (s *Server) shutdownFront(ctx context.Context) error {
	if s.lean == nil { // Start failed before it was made
		return nil
	}
	return s.lean.Shutdown(ctx)
}

// releaseStartResources undoes what a failed Start had opened.
func (s *Server) releaseStartResources() {
	if s.frontLn != nil {
		s.frontLn.Close()
	}
	if s.adminLn != nil {
		s.adminLn.Close()
	}
	s.access.Close()
	s.removeSocketDir()
}

func (s *Server) removeSocketDir() {
	if s.ownSocketDir {
		os.RemoveAll(s.socketDir)
	}
}
