package pyfork

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"warmpool/internal/config"
	"warmpool/internal/telemetry"
	"warmpool/internal/warmup"
	"warmpool/internal/worker"
)

// Options configure Templates.
type Options struct {
	// Helper is the written helper's path (WriteHelper).
	Helper    string
	SocketDir string
	Metrics   *telemetry.Metrics
	// OnChange is called after a template changed state (to republish the status).
	OnChange func()
	// OnImported is told what each template made of its learned modules (nil: no one is).
	OnImported func(Imported)
	// OnCandidate is told how a rebuild's template (GenerationSpec.Candidate) ended its boot:
	// nil when it is ready to fork, else why it failed (the older template keeps forking).
	OnCandidate func(gen int, err error)
	Logger      *slog.Logger
}

// GenerationSpec is how to build one generation's template.
type GenerationSpec struct {
	Gen    int
	Config *config.Config
	Plan   *warmup.Plan
	// Env is its base environment, Nice its CPU nice value (the effective warmup.nice).
	Env  []string
	Nice int
	// Urgent: no worker serves while it boots first (the first start): it boots at normal
	// priority.
	Urgent bool
	// LearnSocket is where its forked workers report the modules they import (internal/learn);
	// "" when nothing is learned.
	LearnSocket string
	// Learned are the modules learned from traffic that it imports after the app. One that
	// makes a template unfit to fork is left out (Options.OnImported hears of it) and a new
	// template starts without it at once.
	Learned []string
	// Candidate marks a rebuild: its template is not restarted, older ones are not retired when
	// it is ready, and Options.OnCandidate hears how its boot ended. The pool then adopts its
	// generation (Adopt), or drops it (Discard).
	Candidate bool
}

// Templates keeps one template per generation and is the pool's worker.Launcher for a Python
// app: it forks from the generation's template, or starts a fresh process when none can fork.
// New has no side effects; Begin starts a generation's template; Close stops them all.
type Templates struct {
	opts    Options
	log     *slog.Logger
	repeats telemetry.Repeats // the last template failure, to log a crash loop once in full
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	mu   sync.Mutex
	gens map[int]*generation
}

// generation is the template of one generation, through its restarts.
type generation struct {
	gen  int
	cfg  *config.Config
	plan *warmup.Plan
	env  []string
	nice int
	// urgent: no worker serves while it boots first (the first start): it boots at normal
	// priority. Its restarts yield to the workers serving meanwhile.
	urgent    bool
	learned   []string      // less what made a template unfit to fork
	socket    string        // where its workers report their imports
	candidate bool          // a rebuild not adopted yet (under the lock)
	stop      chan struct{} // closed when a newer generation's template is ready, or at Close
	state     TemplateState
	tpl       *Template // the current incarnation; nil between restarts
	why       string    // why it cannot fork now
	// refusal is why it refused to fork ("threads", "sockets"); no restart would change that
	// until the next reload.
	refusal  string
	restarts int
	warned   map[string]bool // fallback reasons already logged at WARN
	changed  chan struct{}   // closed and replaced at each state change
	stopOnce sync.Once
	// suspect asks the heartbeat to look at the template now (a launch found it stopped).
	suspect chan struct{}
}

// The heartbeat: a ready template is pinged every heartbeatEvery and must answer within
// heartbeatWithin; one that does not (stopped, frozen, stuck) is killed and restarted warm, and
// workers start as fresh processes meanwhile. A fork must be answered within forkWithin (less
// when warmup.timeout is shorter): it takes milliseconds.
const (
	heartbeatEvery  = time.Second
	heartbeatWithin = 2 * time.Second
	forkWithin      = 5 * time.Second
)

// TemplateState is where a generation's template is.
type TemplateState string

// The template states.
const (
	TemplateBooting    TemplateState = "booting"    // importing and warming
	TemplateReady      TemplateState = "ready"      // forks the workers
	TemplateRefused    TemplateState = "refused"    // runs threads or holds connections: workers start fresh
	TemplateRestarting TemplateState = "restarting" // failed or died; a new one starts after backoff
	TemplateFailed     TemplateState = "failed"     // cannot heal by retrying: workers start fresh until a reload
)

// New returns the templates; nothing runs until Begin.
func New(opts Options) *Templates {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Templates{opts: opts, log: log, closing: make(chan struct{}), gens: map[int]*generation{}}
}

// Begin starts the template of a generation. The templates of older generations stop once it is
// ready to fork (a candidate's: once the pool adopts it).
func (ts *Templates) Begin(spec GenerationSpec) {
	gen := spec.Gen
	g := &generation{gen: gen, cfg: spec.Config, plan: spec.Plan, env: spec.Env, nice: spec.Nice, urgent: spec.Urgent,
		learned: spec.Learned, socket: spec.LearnSocket, candidate: spec.Candidate, stop: make(chan struct{}), state: TemplateBooting,
		warned: map[string]bool{}, changed: make(chan struct{}), suspect: make(chan struct{}, 1)}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	select {
	case <-ts.closing:
		return
	default:
	}
	// An older generation that is not ready to fork is superseded now: it would only keep
	// failing, or booting, for nothing. A ready one forks until this one is ready. (A rebuild
	// supersedes nothing until it is adopted.)
	for _, old := range ts.gens {
		if old.gen < gen && old.state != TemplateReady && !spec.Candidate {
			old.stopOnce.Do(func() { close(old.stop) })
		}
	}
	ts.gens[gen] = g
	ts.wg.Go(func() { ts.run(g) })
}

// run owns a generation's template: boots it, restarts it with backoff when it fails or dies,
// and stops it when told.
func (ts *Templates) run(g *generation) {
	defer ts.forget(g)
	failures := 0
	for {
		t := NewTemplate(TemplateSpec{Generation: g.gen, Config: g.cfg, Helper: ts.opts.Helper, SocketDir: ts.opts.SocketDir,
			Env: g.env, Plan: g.plan, Nice: g.nice, BootAtNormal: g.urgent && failures == 0 && g.restarts == 0, Logger: ts.opts.Logger,
			Learned: g.learned, LearnSocket: g.socket})
		ts.set(g, func() { g.tpl, g.state = t, TemplateBooting })
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Warmup.Timeout.Duration)
		ts.wg.Go(func() { // a stop cancels the boot
			select {
			case <-g.stop:
			case <-ctx.Done():
			}
			cancel()
		})
		err := t.Boot(ctx)
		cancel()
		if ts.opts.OnImported != nil && t.Process() != nil {
			ts.opts.OnImported(t.Imported())
		}
		var refused *RefusedError
		var unfit *PreloadError
		ts.mu.Lock()
		candidate := g.candidate
		ts.mu.Unlock()
		switch {
		case errors.As(err, &unfit) && !ts.isStopped(g):
			// Not the app's failure: the same template without that module, at once.
			ts.log.Warn("a learned module made the template unfit to fork: a new template starts without it", "generation", g.gen, "reason", err)
			g.learned = slices.DeleteFunc(g.learned, func(name string) bool {
				return slices.ContainsFunc(unfit.Dropped, func(d DroppedModule) bool { return d.Module == name })
			})
			continue
		case candidate && err != nil:
			if !ts.isStopped(g) {
				ts.opts.Metrics.TemplateFailed("rebuild")
				if ts.opts.OnCandidate != nil {
					ts.opts.OnCandidate(g.gen, err)
				}
			}
			if errors.As(err, &refused) {
				ts.stopTemplate(t)
			}
			return
		case err == nil:
			failures = 0
			ts.set(g, func() { g.state, g.why = TemplateReady, "" })
			if candidate {
				if ts.opts.OnCandidate != nil {
					ts.opts.OnCandidate(g.gen, nil)
				}
			} else {
				ts.RetireOlder(g.gen)
			}
		case errors.As(err, &refused):
			ts.log.Warn("the template cannot fork: every worker of this generation starts as a fresh process (slower to start, no shared memory) until the app opens them in post_fork",
				"generation", g.gen, "reason", err)
			ts.opts.Metrics.TemplateFailed(refused.Reason())
			ts.set(g, func() { g.state, g.why, g.refusal = TemplateRefused, err.Error(), refused.Reason() })
			ts.stopTemplate(t)
			ts.RetireOlder(g.gen)
			<-g.stop
			return
		default:
			if ts.isStopped(g) {
				return
			}
			failures++
			ts.opts.Metrics.TemplateFailed("boot")
			if first, times, since := ts.repeats.Seen(err.Error()); first {
				ts.log.Error("the template failed to boot; workers start as fresh processes meanwhile", "generation", g.gen, "error", err)
			} else {
				ts.log.Warn("the template failed to boot again, the same way (logged in full the first time)",
					"generation", g.gen, "times", times, "since", since.Format(time.DateTime))
			}
			if unfixable(t, err) {
				ts.log.Error("the template cannot start, and retrying will not change that: no template runs until a reload (SIGHUP) or restart",
					"generation", g.gen)
				ts.set(g, func() {
					g.state, g.why, g.tpl = TemplateFailed, "the template cannot start (retries stopped): "+err.Error(), nil
				})
				<-g.stop
				return
			}
			ts.set(g, func() { g.state, g.why, g.tpl = TemplateRestarting, "the template failed: "+err.Error(), nil })
			if !ts.backoff(g, failures) {
				return
			}
			continue
		}
		ts.repeats.Reset()
		watchCtx, stopWatch := context.WithCancel(context.Background())
		unresponsive := ts.heartbeat(watchCtx, g, t)
		select {
		case why := <-unresponsive:
			stopWatch()
			failures++
			ts.opts.Metrics.TemplateFailed("unresponsive")
			ts.log.Error("the template does not answer: it is killed and restarted warm, and workers start as fresh processes meanwhile",
				"generation", g.gen, "pid", t.PID(), "reason", why)
			ts.set(g, func() {
				g.state, g.why, g.tpl, g.restarts = TemplateRestarting, "the template did not answer: "+why, nil, g.restarts+1
			})
			t.Process().Kill() // SIGKILL ends a stopped process too
			ts.stopTemplate(t)
			if !ts.backoff(g, failures) {
				return
			}
		case <-t.Done():
			stopWatch()
			if ts.isStopped(g) { // it died as it was being stopped: nothing to restart
				ts.stopTemplate(t)
				return
			}
			failures++
			ts.opts.Metrics.TemplateFailed("exited")
			why := "the template exited: " + worker.DescribeExit(t.Process().ExitErr()) + lastWords(t.Process())
			ts.log.Error("the template died; it is restarted warm with backoff, and the workers keep serving", "generation", g.gen, "pid", t.PID(), "reason", why)
			ts.set(g, func() { g.state, g.why, g.tpl, g.restarts = TemplateRestarting, why, nil, g.restarts+1 })
			ts.stopTemplate(t) // reaps it and ends its goroutines
			if !ts.backoff(g, failures) {
				return
			}
		case <-g.stop:
			stopWatch()
			ts.stopTemplate(t)
			return
		}
	}
}

// heartbeat pings the ready template t until ctx ends; the channel tells why it stopped
// answering, once.
func (ts *Templates) heartbeat(ctx context.Context, g *generation, t *Template) <-chan string {
	failed := make(chan string, 1)
	ts.wg.Go(func() {
		tick := time.NewTicker(heartbeatEvery)
		defer tick.Stop()
		for seq := 1; ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			case <-g.suspect:
			}
			if t.Stopped() {
				failed <- "its process is stopped (SIGSTOP, or a debugger)"
				return
			}
			pingCtx, cancel := context.WithTimeout(ctx, heartbeatWithin)
			_, err := t.Ping(pingCtx, seq) // busy: a fork is under way, with its own timeout
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				failed <- fmt.Sprintf("no answer to its heartbeat within %s: %v", heartbeatWithin, err)
				return
			}
		}
	})
	return failed
}

// unfixable says whether the template t failed in a way retrying cannot heal: its interpreter
// could not be run, or the helper said the app's environment lacks its server package.
func unfixable(t *Template, err error) bool {
	p := t.Process()
	if p == nil {
		return false
	}
	if p.PID() == 0 {
		return worker.CannotRun(err) // it never started: the interpreter is missing or not executable
	}
	return Unfixable(p.ExitErr())
}

func (ts *Templates) isStopped(g *generation) bool {
	select {
	case <-g.stop:
		return true
	default:
		return false
	}
}

// stopTemplate stops t, with SIGKILL after 5 s: an app may have made SIGTERM do nothing.
func (ts *Templates) stopTemplate(t *Template) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t.Stop(ctx)
}

// backoff waits before the next attempt, as worker.restart_backoff says; false when stopped.
func (ts *Templates) backoff(g *generation, failures int) bool {
	d, limit := g.cfg.Worker.RestartBackoff.Duration, g.cfg.Worker.RestartBackoffMax.Duration
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	t := time.NewTimer(min(d, limit))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-g.stop:
		return false
	}
}

// Ready reports whether generation gen's template can fork now.
func (ts *Templates) Ready(gen int) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	g := ts.gens[gen]
	return g != nil && g.state == TemplateReady
}

// Adopt makes a rebuild's ready template its generation's for good (restarted when it dies)
// and retires the older ones: the pool now launches its workers from it.
func (ts *Templates) Adopt(gen int) {
	ts.mu.Lock()
	if g := ts.gens[gen]; g != nil {
		g.candidate = false
	}
	ts.mu.Unlock()
	ts.RetireOlder(gen)
}

// Discard stops a rebuild's template that will not be adopted (a reload supersedes it).
func (ts *Templates) Discard(gen int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if g := ts.gens[gen]; g != nil && g.candidate {
		g.stopOnce.Do(func() { close(g.stop) })
	}
}

// RetireOlder stops the templates of generations before gen. A template retires by itself once
// a newer one is ready; the pool calls this when a reload's workers are no Python app.
func (ts *Templates) RetireOlder(gen int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for n, g := range ts.gens {
		if n < gen {
			g.stopOnce.Do(func() { close(g.stop) })
		}
	}
}

func (ts *Templates) forget(g *generation) {
	ts.mu.Lock()
	if ts.gens[g.gen] == g {
		delete(ts.gens, g.gen)
	}
	ts.mu.Unlock()
	ts.changedNow()
}

// set changes g's state under the lock and tells waiters and the pool.
func (ts *Templates) set(g *generation, change func()) {
	ts.mu.Lock()
	change()
	close(g.changed)
	g.changed = make(chan struct{})
	ts.mu.Unlock()
	ts.changedNow()
}

func (ts *Templates) changedNow() {
	if ts.opts.OnChange != nil {
		ts.opts.OnChange()
	}
}

// Launch implements worker.Launcher: a fork of the generation's template, once it is ready
// (waiting up to warmup.timeout while it boots), else a fresh process of the helper (at once
// when the template refused to fork, or failed and waits to be restarted).
func (ts *Templates) Launch(ctx context.Context, l worker.Launch) (worker.Process, error) {
	ts.mu.Lock()
	g := ts.gens[l.Generation]
	ts.mu.Unlock()
	t, reason, why := ts.await(ctx, g, l.Generation)
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	if t != nil && t.Stopped() {
		// It would answer nothing: this worker starts fresh at once, and the heartbeat,
		// told now, kills and restarts the template.
		select {
		case g.suspect <- struct{}{}:
		default:
		}
		t, reason, why = nil, "template_unavailable", "the template's process is stopped (SIGSTOP, or a debugger)"
	}
	if t != nil {
		// A fork takes milliseconds; a template that does not answer in time (stopped, or
		// frozen) is killed by Fork and restarted.
		p, err := t.Fork(ctx, l, min(forkWithin, g.cfg.Warmup.Timeout.Duration))
		if err == nil {
			ts.opts.Metrics.WorkerForked()
			return p, nil
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		reason, why = "fork_failed", err.Error()
	}
	ts.fallback(l, reason, why)
	return worker.ExecLauncher{Origin: "fresh"}.Launch(ctx, l)
}

// await returns g's template once it can fork; else nil and why not (g, of generation gen,
// may be nil: none runs).
func (ts *Templates) await(ctx context.Context, g *generation, gen int) (t *Template, reason, why string) {
	if g == nil {
		return nil, "template_unavailable", fmt.Sprintf("no template runs for generation %d", gen)
	}
	timer := time.NewTimer(g.cfg.Warmup.Timeout.Duration)
	defer timer.Stop()
	for {
		ts.mu.Lock()
		state, tpl, why, changed := g.state, g.tpl, g.why, g.changed
		ts.mu.Unlock()
		switch state {
		case TemplateReady:
			return tpl, "", ""
		case TemplateRefused:
			return nil, g.refusal, why
		case TemplateRestarting, TemplateFailed: // no child comes before its backoff and boot, or ever
			return nil, "template_unavailable", why
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, "", ""
		case <-timer.C:
			if why == "" {
				why = "it was not ready within warmup.timeout"
			}
			return nil, "template_unavailable", fmt.Sprintf("the template was %s: %s", state, why)
		case <-g.stop:
			return nil, "template_unavailable", "the template of this generation was stopped"
		}
	}
}

// fallback tells of a worker started fresh: at WARN with why the first time for each reason of
// a generation, then in one short INFO line (why may carry a template's traceback, already
// logged); the metric counts every one.
func (ts *Templates) fallback(l worker.Launch, reason, why string) {
	ts.opts.Metrics.ForkFallback(reason)
	ts.mu.Lock()
	g := ts.gens[l.Generation]
	first := g != nil && !g.warned[reason]
	if g != nil {
		g.warned[reason] = true
	}
	ts.mu.Unlock()
	const msg = "starting a fresh Python worker process instead of forking one from the warm template"
	if first || g == nil {
		ts.log.Warn(msg, "worker", l.ID, "generation", l.Generation, "reason", reason, "why", why)
		return
	}
	ts.log.Info(msg, "worker", l.ID, "generation", l.Generation, "reason", reason)
}

// TemplateStatus is a template as /status shows it.
type TemplateStatus struct {
	Generation int           `json:"generation"`
	PID        int           `json:"pid,omitempty"`
	State      TemplateState `json:"state"`
	// Problem says why it cannot fork now; workers then start as fresh processes.
	Problem  string `json:"problem,omitempty"`
	Restarts int    `json:"restarts,omitempty"`
}

// Status lists the running templates, oldest generation first.
func (ts *Templates) Status() []TemplateStatus {
	ts.mu.Lock()
	out := make([]TemplateStatus, 0, len(ts.gens))
	for _, g := range ts.gens {
		st := TemplateStatus{Generation: g.gen, State: g.state, Problem: g.why, Restarts: g.restarts}
		if g.tpl != nil {
			st.PID = g.tpl.PID()
		}
		out = append(out, st)
	}
	ts.mu.Unlock()
	slices.SortFunc(out, func(a, b TemplateStatus) int { return a.Generation - b.Generation })
	return out
}

// Close stops every template and waits for every goroutine. Forked workers are the pool's.
func (ts *Templates) Close(ctx context.Context) error {
	ts.once.Do(func() {
		ts.mu.Lock()
		close(ts.closing)
		for _, g := range ts.gens {
			g.stopOnce.Do(func() { close(g.stop) })
		}
		ts.mu.Unlock()
	})
	done := make(chan struct{})
	go func() {
		ts.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
