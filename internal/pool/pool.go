package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"warmpool/internal/config"
	"warmpool/internal/guard"
	"warmpool/internal/learn"
	"warmpool/internal/pyfork"
	"warmpool/internal/telemetry"
	"warmpool/internal/warmup"
	"warmpool/internal/worker"
)

// Rotation is the set of workers that receive client requests (the proxy's balancer).
// The rotation counts each worker's requests (it hands them out); the pool reads the counts.
type Rotation interface {
	// Add puts w into rotation with room for limit concurrent requests, acting on each mark as
	// w's count of client requests reaches it.
	Add(w *worker.Worker, limit int, marks ...worker.CountMark)
	// Remove takes w out of rotation; the channel closes once its in-flight requests finished.
	Remove(w *worker.Worker) <-chan struct{}
	// Counts are w's client requests so far and now, also after Remove.
	Counts(w *worker.Worker) (served, inFlight int64)
	// Forget drops the counts of a worker that exited.
	Forget(w *worker.Worker)
}

// Options configure a Pool.
type Options struct {
	Config   *config.Config
	Rotation Rotation
	// SocketDir holds the workers' sockets; it must exist.
	SocketDir string
	// Env is the workers' base environment; nil means warmpool's own.
	Env []string
	// WarmupSummary states the warm-up plan in the status; empty means "".
	WarmupSummary string
	// Metrics counts spawns, warm-up failures, recycles and crashes; nil records nothing.
	Metrics *telemetry.Metrics
	// Tracer makes a span per worker lifecycle (spawn, warm-up and its requests, admit, drain,
	// exit); nil means no spans.
	Tracer trace.Tracer
	// Learner is what traffic taught (warmup.learn): its requests join every warm-up after the
	// plan, its modules every template; it calls Rebuild when a template rebuild is due. nil:
	// nothing is learned.
	Learner *learn.Learner
	Logger  *slog.Logger
}

// Pool supervises the workers. New has no side effects; Start launches the event loop.
type Pool struct {
	cfg    *config.Config
	rot    Rotation
	log    *slog.Logger
	plan   *warmup.Plan
	env    []string
	dir    string
	met    *telemetry.Metrics
	tracer trace.Tracer // never nil: a no-op tracer when tracing is off
	traced bool
	nice   int // effective warmup.nice: 0 when priorities cannot be restored

	// templates fork the workers of a [worker.python] app; idle otherwise.
	templates *pyfork.Templates
	learner   *learn.Learner // nil: learning is off

	events     chan event
	closing    chan struct{}
	closeOnce  sync.Once
	loopDone   chan struct{}
	started    bool
	killCtx    context.Context // canceled when Close runs out of time: stop everything now
	kill       context.CancelFunc
	firstReady chan struct{}
	wg         sync.WaitGroup

	// Owned by the loop goroutine.
	summary    string
	count      int // desired ready workers: worker.count, changed by Scale
	members    map[*worker.Worker]*member
	nextID     int
	generation int
	failures   int
	nextStart  time.Time
	retry      *time.Timer
	problem    string
	// halted says why no worker is started until a reload: a failure retrying cannot heal.
	halted       string
	bootRepeats  telemetry.Repeats // the last boot failure, to log a crash loop once in full
	isFirstReady bool
	shuttingDown bool
	exits        []ExitRecord
	// recycleLead is how many requests before its max_requests a worker's replacement starts
	// (learned from past recycles; see learnLead).
	recycleLead float64
	// rebuilding is the generation of a rebuild's template while it boots (0: none): the pool
	// rolls to it once it is ready.
	rebuilding int

	mu     sync.Mutex
	status Status
	// statusWorkers are the workers of status, in its order, whose counts Status reads live.
	statusWorkers []*worker.Worker
	// configProblem says why the last reload was refused; empty once one succeeds.
	configProblem string
	// unavailable says why no worker is ready while replacements keep failing; "" otherwise.
	unavailable atomic.Pointer[string]
	changed     chan struct{} // closed and replaced at each publish
}

type member struct {
	w           *worker.Worker
	cancelBoot  context.CancelFunc
	cancelled   bool // boot cancelled on purpose (reload, shutdown): not a failure
	warmed      bool
	warmup      warmup.Result
	admittedAt  time.Time
	bootCPU     time.Duration // CPU its processes used from spawn to admission
	recycle     string        // why it is due for recycling; "" when it is not
	overdue     bool          // past its limit: its replacement is needed now
	overdueAt   time.Time
	yielding    bool  // overdue and at warmup.nice until it drains
	maxRequests int64 // its max_requests with jitter; 0: none
	flaggedAt   time.Time
	lifetime    *time.Timer
	draining    bool
	stopReason  string
	bootProblem string // why its boot failed, as the status said it
	bootErr     error  // why its boot failed; reported once it exited
	retryIn     time.Duration
	priority    *bootPriority
	span        trace.Span // the whole life of the worker
	drainSpan   trace.Span
}

func (m *member) admitted() bool { return !m.admittedAt.IsZero() }

// New returns a pool that will run cfg's workers and admit them into rot.
func New(opts Options) *Pool {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	env := opts.Env
	if env == nil {
		env = config.ChildEnv(os.Environ())
	}
	killCtx, kill := context.WithCancel(context.Background())
	tracer := opts.Tracer
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	p := &Pool{
		cfg:        opts.Config,
		rot:        opts.Rotation,
		log:        log,
		tracer:     tracer,
		traced:     opts.Tracer != nil,
		env:        env,
		dir:        opts.SocketDir,
		met:        opts.Metrics,
		events:     make(chan event, 64),
		closing:    make(chan struct{}),
		loopDone:   make(chan struct{}),
		killCtx:    killCtx,
		kill:       kill,
		firstReady: make(chan struct{}),
		changed:    make(chan struct{}),
		members:    map[*worker.Worker]*member{},
		count:      opts.Config.Worker.Count,
		summary:    opts.WarmupSummary,
		generation: 1,
		learner:    opts.Learner,
	}
	p.plan = p.newPlan(opts.Config)
	p.learner.SetPlan(planned(p.plan))
	p.templates = pyfork.New(pyfork.Options{Helper: pyfork.HelperPath(p.dir), SocketDir: p.dir, Metrics: p.met, Logger: log,
		OnChange:    func() { p.send(templateChanged{}) },
		OnImported:  p.learnedImports,
		OnCandidate: func(gen int, err error) { p.send(rebuilt{gen: gen, err: err}) }})
	return p
}

// beginTemplate starts the current generation's template, for a Python app; for a command
// (a reload may switch), the templates of earlier generations stop.
func (p *Pool) beginTemplate() {
	if p.cfg.Worker.IsPython() {
		learned := p.learned()
		p.templates.Begin(pyfork.GenerationSpec{Gen: p.generation, Config: p.cfg, Plan: p.withLearned(learned.Requests),
			Env: workerEnv(p.env, p.cfg.Worker.Env), Nice: p.nice, Urgent: p.readyCount() == 0,
			Learned: learned.Modules, LearnSocket: p.learnSocket()})
	} else {
		p.templates.RetireOlder(p.generation)
	}
}

func (p *Pool) newPlan(cfg *config.Config) *warmup.Plan {
	plan := warmup.NewPlan(cfg)
	if p.traced {
		plan.Tracer = p.tracer
	}
	if p.learner != nil {
		plan.Dropped = func(r *warmup.Request, why string) { p.learner.DropRequest(r.Method, r.Path, why) }
	}
	return plan
}

// Start launches the event loop, which starts the first workers. For a Python app it writes the
// helper into the socket directory and starts the first template.
func (p *Pool) Start() error {
	if p.cfg.Worker.IsPython() {
		if _, err := pyfork.WriteHelper(p.dir); err != nil {
			return err
		}
		if err := guard.BecomeSubreaper(); err != nil {
			return fmt.Errorf("become a child subreaper, to adopt the workers a template forks: %w", err)
		}
	}
	p.nice = p.effectiveNice(p.cfg)
	p.started = true
	p.publish()
	p.wg.Go(p.loop)
	return nil
}

// Close drains and stops every worker, then waits for every goroutine of the pool. When ctx
// ends first, the workers are killed.
func (p *Pool) Close(ctx context.Context) error {
	p.closeOnce.Do(func() { close(p.closing) })
	defer p.kill()
	if !p.started {
		return nil
	}
	var err error
	select {
	case <-p.loopDone:
	case <-ctx.Done():
		err = ctx.Err()
		p.kill()
	}
	p.wg.Wait()
	return errors.Join(err, p.templates.Close(ctx))
}

// FirstReady is closed once worker.count workers were ready for the first time.
func (p *Pool) FirstReady() <-chan struct{} { return p.firstReady }

// Reload rolls every worker to a new generation, warm-first. Old workers keep serving until
// their replacements are admitted, so a new generation that fails warm-up changes nothing.
func (p *Pool) Reload() { p.send(reload{}) }

// effectiveNice is warmup.nice when priorities can be restored after the warm-up, else 0
// (with a warning: the setting is not silently ignored).
func (p *Pool) effectiveNice(cfg *config.Config) int {
	if !cfg.Warmup.Enabled || cfg.Warmup.Nice == 0 {
		return 0
	}
	if ok, why := worker.CanRestorePriority(); !ok {
		p.log.Warn("warmup.nice not applied: warm-ups run at normal priority", "warmup.nice", cfg.Warmup.Nice, "reason", why)
		return 0
	}
	return cfg.Warmup.Nice
}

// Reconfigure applies a new, valid configuration and rolls every worker to it, warm-first.
func (p *Pool) Reconfigure(cfg *config.Config, warmupSummary string) {
	p.send(reconfigure{cfg: cfg, summary: warmupSummary})
}

// Scale changes the number of ready workers to keep by delta (never below 1). New workers are
// warmed and admitted like any other; surplus workers are drained, oldest first.
func (p *Pool) Scale(delta int) { p.send(scale{delta}) }

// ReportStuck kills a worker that passed the harakiri limit; a warm replacement follows.
func (p *Pool) ReportStuck(w *worker.Worker) { p.send(stuck{w}) }

// Unavailable says why no worker is ready, when none is because replacements keep failing
// (a request should not wait in the queue for one); "" otherwise.
func (p *Pool) Unavailable() string {
	if why := p.unavailable.Load(); why != nil {
		return *why
	}
	return ""
}

// ReportConfigRejected shows why a reload's configuration was refused in the status, until
// a reload succeeds.
func (p *Pool) ReportConfigRejected(why string) { p.send(configRejected{why}) }

// ReportHung takes a worker that let a request pass the request timeout out of rotation at
// once; a warm replacement follows, and the worker is stopped after graceful_timeout.
func (p *Pool) ReportHung(w *worker.Worker) { p.send(hung{w}) }

// Rebuild starts a template rebuild with what was learned, when one is due (the learner calls
// it); a Python app's workers roll to it once it is warm.
func (p *Pool) Rebuild() { p.send(rebuild{}) }

// HasWorker reports whether pid is one of the pool's workers now.
func (p *Pool) HasWorker(pid int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.statusWorkers {
		if w.PID() == pid { // live: a fork's pid is known before the next publish
			return true
		}
	}
	return false
}

// ReportRefusing drains a worker whose socket refused a connection (the front took it out of
// rotation already); usually it is exiting, and its exit is handled as a crash.
func (p *Pool) ReportRefusing(w *worker.Worker) { p.send(refusing{w}) }

// Status is the latest snapshot of the pool.
func (p *Pool) Status() Status {
	p.mu.Lock()
	st, ws := p.status, p.statusWorkers
	p.mu.Unlock()
	// The request counts change with every request: read live from the rotation, not copied
	// at the last lifecycle event.
	st.Workers = slices.Clone(st.Workers)
	for i, w := range ws {
		st.Workers[i].Served, st.Workers[i].InFlight = p.rot.Counts(w)
	}
	if st.Python {
		st.Templates = p.templates.Status()
	}
	if p.learner != nil && st.Learning {
		learned := p.learner.Status()
		st.Learned = &learned
	}
	return st
}

// StatusChanged returns a channel that is closed at the next change of the status.
func (p *Pool) StatusChanged() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *Pool) send(ev event) {
	select {
	case p.events <- ev:
	case <-p.loopDone:
	}
}

func (p *Pool) loop() {
	defer close(p.loopDone)
	var rssTick <-chan time.Time
	if p.cfg.Worker.MaxRSS.Bytes > 0 {
		t := time.NewTicker(p.cfg.Worker.RSSCheckInterval.Duration)
		defer t.Stop()
		rssTick = t.C
	}
	closing := p.closing
	p.beginTemplate()
	p.reconcile()
	p.publish()
	for {
		var retry <-chan time.Time
		if p.retry != nil {
			retry = p.retry.C
		}
		select {
		case ev := <-p.events:
			p.handle(ev)
		case <-retry:
			p.retry = nil
		case <-rssTick:
			p.checkRSS()
		case <-closing:
			closing = nil
			p.beginShutdown()
		}
		if p.shuttingDown && len(p.members) == 0 {
			if p.retry != nil {
				p.retry.Stop()
			}
			p.publish()
			return
		}
		p.reconcile()
		p.publish()
		p.announceFirstReady()
	}
}

// announceFirstReady closes FirstReady and logs it, after the status that shows it was
// published, so whoever reacts to either sees a ready status.
func (p *Pool) announceFirstReady() {
	if !p.isFirstReady {
		return
	}
	select {
	case <-p.firstReady:
	default:
		close(p.firstReady)
		p.log.Info("pool ready", "workers", p.count)
	}
}

func (p *Pool) handle(ev event) {
	switch ev := ev.(type) {
	case booted:
		p.onBooted(ev)
	case exited:
		p.onExited(ev.w)
	case due:
		if m := p.members[ev.w]; m != nil {
			p.onDue(m, ev)
		}
	case stuck:
		p.onStuck(ev.w)
	case hung:
		if m := p.members[ev.w]; m != nil && m.admitted() && !m.draining {
			p.met.WorkerCrashed("hung")
			p.drain(m, ReasonHung)
		}
	case refusing:
		if m := p.members[ev.w]; m != nil && m.admitted() && !m.draining {
			p.log.Warn("worker refused a connection: nothing listens on its socket; it leaves rotation and is replaced",
				"worker", ev.w.ID(), "pid", ev.w.PID())
			p.drain(m, ReasonRefused) // its exit counts as a crash (onExited)
		}
	case reload:
		p.onReload()
	case templateChanged: // published below
	case rebuild:
		p.startRebuild()
	case rebuilt:
		p.onRebuilt(ev)
	case configRejected:
		p.configProblem = ev.why
	case reconfigure:
		p.configProblem = ""
		p.cfg, p.plan, p.summary = ev.cfg, p.newPlan(ev.cfg), ev.summary
		p.learner.SetPlan(planned(p.plan))
		p.nice = p.effectiveNice(ev.cfg)
		p.count = ev.cfg.Worker.Count
		p.log.Info("configuration reloaded", "workers", p.count, "warmup", ev.summary)
		p.onReload()
	case scale:
		old, floor := p.count, max(1, p.cfg.MinReady)
		p.count = max(floor, p.count+ev.delta)
		if p.count == old {
			// Below min_ready, /readyz would fail (and a load balancer stop sending) while
			// the front still serves: the same contradiction the config refuses.
			p.log.Warn("not scaling down: the pool is at min_ready, and fewer workers would fail /readyz; lower min_ready first",
				"workers", old, "min_ready", p.cfg.MinReady)
			return
		}
		p.log.Info("scaling the pool", "from", old, "to", p.count)
	}
}
