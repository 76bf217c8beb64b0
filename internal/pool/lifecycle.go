package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"warmpool/internal/config"
	"warmpool/internal/pyfork"
	"warmpool/internal/warmup"
	"warmpool/internal/worker"
)

// reconcile starts workers until count are ready plus up to surge replacements for workers
// due for recycling, and retires due workers once their replacements are in rotation.
func (p *Pool) reconcile() {
	if p.shuttingDown {
		return
	}
	count, surge := p.count, p.cfg.Worker.Surge
	ready, booting := 0, 0
	var due, steady, boots []*member
	for _, m := range p.members {
		switch {
		case m.draining || m.cancelled:
		case m.admitted():
			ready++
			if m.recycle != "" {
				due = append(due, m)
			} else {
				steady = append(steady, m)
			}
		default:
			booting++
			boots = append(boots, m)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].flaggedAt.Before(due[j].flaggedAt) })
	for ready > count && len(due) > 0 {
		p.learnLead(due[0])
		wait := time.Since(due[0].flaggedAt)
		p.met.RecycleWait(wait)
		var past time.Duration // how long it served past its limit
		if due[0].overdue {
			past = time.Since(due[0].overdueAt)
		}
		p.log.Info("replacement admitted for a worker due for recycling", "worker", due[0].w.ID(), "reason", due[0].recycle,
			"waited", wait.Round(time.Millisecond), "past_limit", past.Round(time.Millisecond))
		p.drain(due[0], "recycled: "+due[0].recycle)
		due = due[1:]
		ready--
	}
	// Scaled down: the oldest workers go.
	sort.Slice(steady, func(i, j int) bool { return steady[i].admittedAt.Before(steady[j].admittedAt) })
	for ; ready > count && len(steady) > 0; ready-- {
		p.drain(steady[0], ReasonScaleDown)
		steady = steady[1:]
	}
	missing, overdue := max(0, count-ready), 0
	for _, m := range due {
		if m.overdue {
			overdue++
		}
	}
	// surge bounds the replacements started early; a worker past its limit gets its
	// replacement now, as a missing one does.
	want := missing + max(overdue, min(len(due), surge))
	for ; booting > want && len(boots) > 0; booting-- {
		m := boots[len(boots)-1]
		boots = boots[:len(boots)-1]
		m.cancelled, m.stopReason = true, ReasonScaleDown
		m.cancelBoot()
	}
	raiseNeeded(boots, missing+overdue)
	if booting >= want {
		return
	}
	if wait := time.Until(p.nextStart); wait > 0 {
		if p.retry == nil {
			p.retry = time.NewTimer(wait)
		}
		return
	}
	if p.halted != "" {
		return // until a reload: retrying would fail the same way
	}
	for ; booting < want; booting++ {
		p.spawn(booting >= missing+overdue)
	}
}

// spawn starts a worker; early: it replaces a worker that still serves below its limit (see
// the policy in priority.go).
func (p *Pool) spawn(early bool) {
	p.nextID++
	cfg := p.cfg
	early = early && p.nice > 0 // no priority is lowered where none can be restored
	spec := WorkerSpec(cfg, p.nextID, p.generation, p.dir, p.env, p.log)
	spec.BootIdle = early
	if cfg.Worker.IsPython() {
		spec.Launcher = p.templates
	}
	w := worker.New(spec)
	traceCtx, span := p.tracer.Start(context.Background(), "warmpool.worker", trace.WithAttributes(
		attribute.Int("warmpool.worker.id", w.ID()), attribute.Int("warmpool.worker.generation", w.Generation())))
	ctx, cancel := context.WithCancel(traceCtx)
	prio := newBootPriority(w, p.nice, early, p.log)
	p.members[w] = &member{w: w, cancelBoot: cancel, span: span, priority: prio}
	b := bootSpec{cfg: cfg, plan: p.workerPlan(), priority: prio}
	p.met.WorkerSpawned()
	p.wg.Go(func() { p.run(ctx, w, b) })
}

// WorkerSpec is how the pool spawns a worker of cfg: diagnose uses it to start workers the same
// way (for a Python app: as fresh processes of the helper, which must be in socketDir). env is
// the base environment.
func WorkerSpec(cfg *config.Config, id, generation int, socketDir string, env []string, log *slog.Logger) worker.Spec {
	headerTimeout := cfg.Proxy.RequestTimeout.Duration
	if cfg.Proxy.Harakiri.Duration > headerTimeout {
		headerTimeout = cfg.Proxy.Harakiri.Duration
	}
	spec := worker.Spec{
		ID:                    id,
		Generation:            generation,
		Command:               cfg.Worker.Command,
		UsePort:               cfg.Worker.UsesPort(),
		Dir:                   cfg.Worker.Dir,
		Env:                   workerEnv(env, cfg.Worker.Env),
		LogOutput:             cfg.Worker.LogOutput,
		SocketDir:             socketDir,
		Notify:                cfg.Warmup.Ready == config.ReadyNotify,
		Concurrency:           cfg.Worker.Concurrency,
		ResponseHeaderTimeout: headerTimeout,
		Logger:                log,
	}
	if cfg.Worker.IsPython() {
		// A fresh process of the helper; the pool's launcher forks from the template instead
		// whenever it can. warmpool binds the socket, so a fork and a fresh process get it alike.
		spec.Command = pyfork.Command(cfg, pyfork.HelperPath(socketDir), "serve")
		spec.Env = pyfork.Env(spec.Env)
		spec.Bind = true
		spec.Launcher = worker.ExecLauncher{Origin: "fresh"}
	}
	return spec
}

// exitingGrace is how long a worker whose boot failed may take to exit by itself before it is
// stopped.
const exitingGrace = 300 * time.Millisecond

// bootSpec is what a worker's goroutine needs of the configuration, fixed at its spawn so a
// reload never changes a boot under way.
type bootSpec struct {
	cfg      *config.Config
	plan     *warmup.Plan
	priority *bootPriority
}

// run owns one worker from spawn to exit; it reports to the loop and never changes pool state.
func (p *Pool) run(ctx context.Context, w *worker.Worker, b bootSpec) {
	res, err := p.boot(ctx, w, b)
	p.send(booted{w: w, result: res, err: err})
	if err != nil {
		// A boot often fails because the worker is exiting (its socket closed under the
		// warm-up): a moment to exit by itself keeps its exit status, which can say that
		// retrying is pointless (cannotHeal), instead of our SIGTERM's.
		select {
		case <-w.Done():
		case <-time.After(exitingGrace):
		}
		// It never served a client; stop it politely but briefly.
		stopCtx, cancel := context.WithTimeout(p.killCtx, min(b.cfg.Worker.GracefulTimeout.Duration, 5*time.Second))
		w.Stop(stopCtx)
		cancel()
	}
	<-w.Done()
	w.Wait()
	p.send(exited{w: w})
}

// boot spawns the worker, waits for its ready signal and socket, and runs the warm-up plan,
// all within warmup.timeout from the spawn. (A fork's launcher waits for its template first,
// up to warmup.timeout of its own, and then starts a fresh process, which gets the whole
// timeout.) The worker exiting ends it at once with the exit status.
func (p *Pool) boot(ctx context.Context, w *worker.Worker, b bootSpec) (warmup.Result, error) {
	_, spawnSpan := p.tracer.Start(ctx, "warmpool.worker.spawn")
	if err := w.Start(ctx); err != nil {
		endSpan(spawnSpan, err)
		return warmup.Result{}, fmt.Errorf("%w: %w", errSpawn, err)
	}
	timeout := b.cfg.Warmup.Timeout.Duration
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("warmup.timeout (%s) passed: %w", timeout, errBootTimeout))
	defer cancelTimeout()
	spawnSpan.SetAttributes(attribute.Int("process.pid", w.PID()))
	b.priority.apply()
	if b.priority.isEarly() {
		raise := time.AfterFunc(timeout/2, func() { b.priority.raise(bootLate, "half its warmup.timeout passed") })
		defer raise.Stop()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p.wg.Go(func() {
		select {
		case <-w.Done():
			cancel(fmt.Errorf("%w: %s", errBootExit, worker.DescribeExit(w.ExitErr())))
		case <-ctx.Done():
		}
	})
	if ready := w.NotifyReady(); ready != nil {
		select {
		case <-ready:
		case <-ctx.Done():
			err := fmt.Errorf("waiting for READY=1 on NOTIFY_SOCKET: %w", context.Cause(ctx))
			endSpan(spawnSpan, err)
			return warmup.Result{}, err
		}
	}
	if err := w.WaitListening(ctx); err != nil {
		endSpan(spawnSpan, err)
		return warmup.Result{}, err
	}
	endSpan(spawnSpan, nil)
	if !b.cfg.Warmup.Enabled {
		return warmup.Result{}, nil
	}
	w.SetState(worker.Warming)
	b.priority.apply() // again: threads started since the spawn
	warmCtx, warmSpan := p.tracer.Start(ctx, "warmpool.warmup", trace.WithAttributes(attribute.Int("warmpool.warmup.requests", b.plan.Total())))
	res, err := b.plan.Run(warmCtx, w.Transport())
	endSpan(warmSpan, err)
	// The warm-up's connections are not the ones client traffic uses: free them now.
	w.Transport().CloseIdleConnections()
	if err == nil {
		b.priority.restore()
	}
	return res, err
}

func (p *Pool) onBooted(ev booted) {
	m := p.members[ev.w]
	if m == nil {
		return
	}
	w := ev.w
	if ev.err != nil {
		if m.cancelled {
			p.log.Info("worker boot cancelled", "worker", w.ID(), "reason", m.stopReason)
			return
		}
		p.failures++
		p.met.WarmupFailed(failureReason(ev.err))
		delay := p.backoff()
		p.nextStart = time.Now().Add(delay)
		p.problem = fmt.Sprintf("worker %d (generation %d) failed to boot: %v", w.ID(), w.Generation(), ev.err)
		// Reported once it exited (onExited), with what it said last: all of it is read then.
		m.bootProblem, m.bootErr, m.retryIn = p.problem, ev.err, delay
		m.stopReason = "failed warm-up"
		if errors.Is(ev.err, errSpawn) {
			m.stopReason = "failed to start"
		}
		return
	}
	m.warmed, m.warmup = true, ev.result
	if p.shuttingDown || w.Generation() < p.generation {
		m.cancelled, m.stopReason = true, "superseded before admission"
		m.cancelBoot()
		p.stopUnadmitted(m)
		return
	}
	p.admit(m)
}

// admit is the only way into rotation, and only for a worker whose warm-up passed.
func (p *Pool) admit(m *member) {
	w := m.w
	if !m.warmed {
		p.log.Error("refusing to admit a worker that has not passed its warm-up", "worker", w.ID())
		return
	}
	wc := &p.cfg.Worker
	var maxRequests int64
	if wc.MaxRequests > 0 {
		maxRequests = int64(wc.MaxRequests + jitterInt(wc.MaxRequestsJitter))
	}
	m.maxRequests = maxRequests
	var marks []worker.CountMark
	if maxRequests > 0 {
		at := func(stage dueStage) func() {
			return func() { p.wg.Go(func() { p.send(due{w: w, reason: ReasonMaxRequests, stage: stage}) }) } // never block a request
		}
		// Its replacement starts this many requests early, so that it is warm when the worker
		// reaches its limit rather than well after.
		if dueAt := max(1, maxRequests-int64(p.recycleLead)); dueAt < maxRequests {
			marks = append(marks, worker.CountMark{At: dueAt, Reached: at(dueEarly)})
		}
		// (With no lead the limit is the one mark: two events for one request could arrive in
		// either order, and an early, idle replacement be started for a worker already due.)
		marks = append(marks, worker.CountMark{At: maxRequests, Reached: at(dueAtLimit)})
		if ceiling := requestCeiling(maxRequests, wc.MaxRequestsCeiling); ceiling > 0 {
			marks = append(marks, worker.CountMark{At: ceiling, Reached: at(dueAtCeiling), Retire: true})
		}
	}
	if wc.MaxLifetime.Duration > 0 {
		life := wc.MaxLifetime.Duration + jitterDuration(wc.MaxLifetimeJitter.Duration)
		m.lifetime = time.AfterFunc(life, func() { p.send(due{w: w, reason: ReasonMaxLifetime}) })
	}
	w.SetState(worker.Ready)
	m.admittedAt = time.Now()
	_, admitSpan := p.tracer.Start(trace.ContextWithSpan(context.Background(), m.span), "warmpool.worker.admit")
	admitSpan.End()
	p.rot.Add(w, wc.Concurrency, marks...)
	p.met.WorkerAdmitted(m.admittedAt.Sub(w.StartedAt()))
	m.bootCPU, _ = w.CPUTime() // 0 if it exited meanwhile; its exit event follows
	p.met.WorkerBootCPU(m.bootCPU)
	p.failures, p.problem, p.nextStart = 0, "", time.Time{}
	p.bootRepeats.Reset()
	p.log.Info("worker admitted into rotation", "worker", w.ID(), "generation", w.Generation(), "pid", w.PID(),
		"boot", m.admittedAt.Sub(w.StartedAt()).Round(time.Millisecond), "boot_cpu", m.bootCPU.Round(time.Millisecond),
		"origin", w.Origin(), "warmup_requests", m.warmup.Requests,
		"warmup", m.warmup.Duration.Round(time.Millisecond), "slowest_warmup_request", m.warmup.Slowest.Round(time.Millisecond))
	if len(m.warmup.NotSuccess) > 0 {
		p.log.Warn("worker admitted although warm-up requests were answered with an error, which its expect accepts: it may meet clients cold",
			"worker", w.ID(), "answers", strings.Join(m.warmup.NotSuccess, "; "))
	}
	if !p.isFirstReady && p.readyCount() >= p.count {
		p.isFirstReady = true // announced by the loop once the status shows it
	}
}

func (p *Pool) readyCount() int {
	n := 0
	for _, m := range p.members {
		if m.admitted() && !m.draining {
			n++
		}
	}
	return n
}

// learnLead adjusts how many requests before max_requests a replacement starts, from how far
// past (or short of) its limit a worker due at max_requests served by the time its replacement
// was admitted: half the miss at a time, between 0 and half of max_requests.
func (p *Pool) learnLead(m *member) {
	if m.recycle != ReasonMaxRequests || m.maxRequests <= 0 {
		return
	}
	p.recycleLead = nextLead(p.recycleLead, p.served(m.w), m.maxRequests)
}

func nextLead(lead float64, served, maxRequests int64) float64 {
	miss := float64(served - maxRequests)
	return min(max(lead+miss/2, 0), float64(maxRequests)/2)
}

// requestCeiling is the request count past which a worker with maxRequests leaves rotation
// even before its replacement is ready: factor times its limit (0: none).
func requestCeiling(maxRequests int64, factor float64) int64 {
	if factor <= 0 || maxRequests <= 0 {
		return 0
	}
	return max(maxRequests+1, int64(math.Ceil(factor*float64(maxRequests))))
}

// onDue acts on a worker's recycle trigger: flagged (its replacement starts), needed now once
// at its limit, and drained at once at its ceiling.
func (p *Pool) onDue(m *member, ev due) {
	p.flag(m, ev.reason)
	if ev.stage >= dueAtLimit {
		p.markOverdue(m)
	}
	if ev.stage == dueAtCeiling && m.admitted() && !m.draining {
		p.met.RecycleCeiling()
		p.log.Warn("worker reached max_requests_ceiling before its replacement was ready: it is drained now, and the pool serves with one worker less until the replacement is admitted",
			"worker", m.w.ID(), "requests", p.served(m.w), "max_requests", m.maxRequests,
			"max_requests_ceiling", p.cfg.Worker.MaxRequestsCeiling, "waited", time.Since(m.flaggedAt).Round(time.Millisecond))
		p.drain(m, "recycled: max_requests_ceiling reached before its replacement was ready")
	}
}

// markOverdue notes that m is past its limit: its replacement is needed now (reconcile raises
// it), and m itself yields the CPU to that replacement until it is admitted (priority.go).
func (p *Pool) markOverdue(m *member) {
	if m.overdue {
		return
	}
	m.overdue, m.overdueAt = true, time.Now()
	if !m.admitted() || m.draining {
		return
	}
	if p.nice > 0 {
		if err := m.w.SetPriority(worker.Priority{Nice: p.nice}); err != nil {
			p.log.Debug("could not lower the priority of a worker past its limit", "worker", m.w.ID(), "error", err)
			return
		}
		m.yielding = true
	}
}

// flag marks an admitted worker as due for recycling; reconcile starts its replacement.
func (p *Pool) flag(m *member, reason string) {
	if !m.admitted() || m.draining || m.recycle != "" {
		return
	}
	m.recycle, m.flaggedAt = reason, time.Now()
	// A lifetime or memory limit is reached when it fires: its replacement is needed now.
	// (max_requests fires early, by the lead, and is needed at the limit: onDue.)
	if reason == ReasonMaxLifetime || reason == ReasonMaxRSS {
		p.markOverdue(m)
	}
	p.met.RecycleDue(reason)
	p.log.Info("worker due for recycling; its replacement is started and warmed first",
		"worker", m.w.ID(), "reason", reason, "requests", p.served(m.w), "age", time.Since(m.w.StartedAt()).Round(time.Millisecond))
}

// drain takes a worker out of rotation, lets its requests finish and stops it.
func (p *Pool) drain(m *member, why string) {
	if m.draining {
		return
	}
	m.draining, m.stopReason = true, why
	if m.lifetime != nil {
		m.lifetime.Stop()
	}
	_, m.drainSpan = p.tracer.Start(trace.ContextWithSpan(context.Background(), m.span), "warmpool.worker.drain",
		trace.WithAttributes(attribute.String("warmpool.drain.reason", why)))
	w := m.w
	w.SetState(worker.Draining)
	drained := p.rot.Remove(w)
	if m.yielding { // it finishes its requests and stops at normal priority
		if err := w.SetPriority(worker.Priority{}); err != nil {
			p.log.Debug("could not restore a draining worker's priority", "worker", w.ID(), "error", err)
		}
	}
	grace := p.cfg.Worker.GracefulTimeout.Duration
	p.log.Info("draining worker", "worker", w.ID(), "reason", why, "in_flight", p.inFlight(w))
	p.wg.Go(func() {
		deadline := time.Now().Add(grace)
		t := time.NewTimer(grace)
		defer t.Stop()
		// It stops at normal priority (priority.go): in the idle class, a busy machine kept
		// stopping workers waiting for CPU for many seconds.
		select {
		case <-drained:
		case <-t.C:
			p.log.Warn("worker still busy at graceful_timeout; stopping it anyway", "worker", w.ID(), "in_flight", p.inFlight(w))
		case <-p.killCtx.Done():
		}
		ctx, cancel := context.WithTimeout(p.killCtx, max(time.Until(deadline), time.Second))
		defer cancel()
		w.Stop(ctx)
	})
}

func (p *Pool) stopUnadmitted(m *member) {
	m.draining = true
	w := m.w
	grace := p.cfg.Worker.GracefulTimeout.Duration
	p.wg.Go(func() {
		ctx, cancel := context.WithTimeout(p.killCtx, grace)
		defer cancel()
		w.Stop(ctx)
	})
}

func (p *Pool) onExited(w *worker.Worker) {
	m := p.members[w]
	if m == nil {
		return
	}
	delete(p.members, w)
	m.cancelBoot()
	if m.lifetime != nil {
		m.lifetime.Stop()
	}
	reason := m.stopReason
	if m.bootErr != nil {
		p.reportBootFailure(m)
	}
	// A worker that refused connections was not stopped by choice: its socket had closed
	// before it was drained (it was dying, or broken).
	crashed := m.admitted() && (!w.StopRequested() || m.stopReason == ReasonRefused)
	if crashed {
		p.met.WorkerCrashed("exited")
		p.rot.Remove(w)
		reason = "crashed: " + worker.DescribeExit(w.ExitErr())
		lived := time.Since(m.admittedAt)
		if p.served(w) == 0 && lived < crashGrace {
			// It died before serving anyone: a crash loop in the making, backed off like a
			// failed boot. One that served is replaced at once.
			p.failures++
			p.nextStart = time.Now().Add(p.backoff())
		}
		p.problem = fmt.Sprintf("worker %d crashed after %s in rotation: %s", w.ID(), lived.Round(time.Millisecond), worker.DescribeExit(w.ExitErr()))
		p.log.Error("worker exited unexpectedly; a warm replacement follows", "worker", w.ID(), "pid", w.PID(),
			"exit", worker.DescribeExit(w.ExitErr()), "served", p.served(w), "in_flight_lost", p.inFlight(w))
	} else {
		if reason == "" {
			reason = "exited: " + worker.DescribeExit(w.ExitErr())
		}
		p.log.Info("worker stopped", "worker", w.ID(), "pid", w.PID(), "reason", reason, "served", p.served(w), "max_requests", m.maxRequests)
	}
	if m.drainSpan != nil {
		m.drainSpan.End()
	}
	m.span.AddEvent("warmpool.worker.exit", trace.WithAttributes(attribute.String("warmpool.exit.reason", reason)))
	m.span.SetAttributes(attribute.Int("process.pid", w.PID()), attribute.Int64("warmpool.worker.requests", p.served(w)))
	if crashed || !m.admitted() && !m.cancelled {
		m.span.SetStatus(codes.Error, reason)
	}
	m.span.End()
	served := p.served(w)
	exit := ExitRecord{ID: w.ID(), PID: w.PID(), At: time.Now(), Reason: reason, Served: served}
	if m.recycle == ReasonMaxRequests && m.maxRequests > 0 {
		// It served on while its replacement booted and warmed: how far past, for operators to see.
		exit.MaxRequests = m.maxRequests
		p.met.RecycleOvershoot(served - m.maxRequests)
	}
	p.exits = append(p.exits, exit)
	p.rot.Forget(w)
	if len(p.exits) > recentExits {
		p.exits = p.exits[len(p.exits)-recentExits:]
	}
}

// reportBootFailure logs a failed boot once it exited: in full at ERROR, with what the worker
// said last (Django's "Invalid HTTP_HOST header ... add it to ALLOWED_HOSTS", a traceback), the
// first time; a crash loop's repeats of the same failure as one short line each. A failure that
// retrying cannot heal stops the retries.
func (p *Pool) reportBootFailure(m *member) {
	w := m.w
	said := w.RecentOutput(20)
	if p.problem == m.bootProblem && len(said) > 0 {
		p.problem += "; the worker's last output: " + said[len(said)-1]
	}
	text := m.bootErr.Error()
	if len(said) > 0 {
		text += "\n" + said[len(said)-1]
	}
	if first, times, since := p.bootRepeats.Seen(text); first {
		p.log.Error("worker failed its boot or warm-up; it is stopped and never admitted",
			"worker", w.ID(), "generation", w.Generation(), "pid", w.PID(), "error", m.bootErr,
			"output", strings.Join(said, "\n"), "consecutive_failures", p.failures, "retry_in", m.retryIn)
	} else {
		p.log.Warn("worker failed its boot again, the same way (logged in full the first time)",
			"worker", w.ID(), "times", times, "since", since.Format(time.DateTime), "consecutive_failures", p.failures, "retry_in", m.retryIn)
	}
	if why := cannotHeal(m.bootErr, w, p.cfg.Worker.IsPython()); why != "" && p.halted == "" {
		p.halted = why
		p.problem = fmt.Sprintf("retries stopped: %s; fix it, then reload (SIGHUP) or restart warmpool", why)
		p.log.Error("workers cannot start, and retrying will not change that: warmpool stops retrying until a reload (SIGHUP) or restart",
			"reason", why)
	}
}

// cannotHeal says why a boot failure is one that retrying cannot heal, or "": the worker's
// program (the Python interpreter) does not exist or cannot be run, or the Python helper said
// its server package is missing.
func cannotHeal(err error, w *worker.Worker, python bool) string {
	if errors.Is(err, errSpawn) && worker.CannotRun(err) {
		return "the worker's program cannot be run: " + err.Error()
	}
	if python && pyfork.Unfixable(w.ExitErr()) {
		said := w.RecentOutput(1)
		return "the app's Python environment lacks what the helper needs: " + strings.Join(said, "")
	}
	return ""
}

func (p *Pool) onStuck(w *worker.Worker) {
	m := p.members[w]
	if m == nil || !m.admitted() || m.draining {
		return
	}
	m.draining, m.stopReason = true, "killed: passed the harakiri limit"
	p.met.WorkerCrashed("harakiri")
	p.rot.Remove(w)
	w.MarkStopping()
	w.Kill()
}

func (p *Pool) onReload() {
	p.dropRebuild()
	p.generation++
	p.log.Info("reload: rolling every worker to a new generation, warm-first", "generation", p.generation)
	p.beginTemplate()
	p.rollTo(ReasonReload)
	// A reload is a deliberate new attempt: do not make it wait for an old backoff, nor stay
	// halted by a failure retrying could not heal.
	p.nextStart, p.halted = time.Time{}, ""
	p.bootRepeats.Reset()
	if p.retry != nil {
		p.retry.Stop()
		p.retry = nil
	}
}

// rollTo replaces every worker of an older generation than the current one, warm-first: the
// admitted ones are due for recycling (for reason), the booting ones are cancelled.
func (p *Pool) rollTo(reason string) {
	for _, m := range p.members {
		switch {
		case m.w.Generation() >= p.generation || m.draining:
		case m.admitted():
			m.recycle = ""
			p.flag(m, reason)
		default:
			m.cancelled, m.stopReason = true, "superseded by "+reason
			m.cancelBoot()
		}
	}
}

func (p *Pool) beginShutdown() {
	p.shuttingDown = true
	p.log.Info("stopping all workers")
	for _, m := range p.members {
		switch {
		case m.draining:
		case m.admitted():
			p.drain(m, "shutdown")
		default:
			m.cancelled, m.stopReason = true, "shutdown"
			m.cancelBoot()
		}
	}
}

func (p *Pool) checkRSS() {
	limit := p.cfg.Worker.MaxRSS.Bytes
	for _, m := range p.members {
		if !m.admitted() || m.draining || m.recycle != "" {
			continue
		}
		rss, err := m.w.RSS()
		if err != nil {
			continue // it is exiting; the exit event follows
		}
		if rss > limit {
			p.log.Info("worker above max_rss", "worker", m.w.ID(), "rss", rss, "max_rss", limit)
			p.flag(m, ReasonMaxRSS)
		}
	}
}

func (p *Pool) backoff() time.Duration {
	base, limit := p.cfg.Worker.RestartBackoff.Duration, p.cfg.Worker.RestartBackoffMax.Duration
	d := base
	for i := 1; i < p.failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func (p *Pool) publish() {
	st := Status{
		Generation:    p.generation,
		Desired:       p.count,
		FirstReady:    p.isFirstReady,
		ShuttingDown:  p.shuttingDown,
		WarmupEnabled: p.cfg.Warmup.Enabled,
		WarmupPlan:    p.summary,
		Learning:      p.cfg.Warmup.Learn,
		Python:        p.cfg.Worker.IsPython(),
		Problem:       joinProblems(p.configProblem, p.problem),
		Failures:      p.failures,
		RecentExits:   append([]ExitRecord(nil), p.exits...),
	}
	members := make([]*member, 0, len(p.members))
	for _, m := range p.members {
		members = append(members, m)
	}
	sort.Slice(members, func(i, j int) bool { return members[i].w.ID() < members[j].w.ID() })
	workers := make([]*worker.Worker, len(members))
	for i, m := range members {
		w := m.w
		workers[i] = w
		ws := WorkerStatus{ID: w.ID(), PID: w.PID(), State: w.State(), Generation: w.Generation(),
			StartedAt: w.StartedAt(), Recycle: m.recycle, MaxRequests: m.maxRequests, Origin: w.Origin()}
		if m.admitted() {
			at := m.admittedAt
			ws.AdmittedAt = &at
			ws.WarmupTime = m.warmup.Duration.Seconds()
			ws.BootCPU = m.bootCPU.Seconds()
			if !m.draining {
				st.Ready++
			}
		}
		st.Workers = append(st.Workers, ws)
	}
	if p.failures > 0 && time.Until(p.nextStart) > 0 && p.halted == "" {
		next := p.nextStart
		st.NextTry = &next
	}
	var unavailable string
	// Requests are answered 503 at once only while replacements keep failing (a boot failed, or
	// a worker died before serving): after a serving worker's crash its replacement is on its
	// way, and requests wait in the queue for it.
	if st.Ready == 0 && p.failures > 0 && p.problem != "" && !p.shuttingDown {
		unavailable = p.problem
		if wait := time.Until(p.nextStart); wait > 0 && p.halted == "" {
			unavailable += fmt.Sprintf("; the next try is in %s", wait.Round(time.Millisecond))
		}
	}
	p.unavailable.Store(&unavailable)
	p.mu.Lock()
	p.status, p.statusWorkers = st, workers
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Causes that end a boot, for messages and the failure metric's reason.
var (
	errBootTimeout = errors.New("boot timed out")
	errBootExit    = errors.New("worker exited during boot")
	errSpawn       = errors.New("could not start the worker's command")
)

func failureReason(err error) string {
	var f *warmup.Failure
	switch {
	case errors.Is(err, errSpawn):
		return "spawn"
	case errors.Is(err, errBootTimeout):
		return "timeout"
	case errors.Is(err, errBootExit):
		return "exited"
	case errors.As(err, &f) && f.Status != 0:
		return "status"
	default:
		return "error"
	}
}

func jitterInt(n int) int {
	if n <= 0 {
		return 0
	}
	return rand.IntN(n + 1)
}

func jitterDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// workerEnv overlays the configured variables on the base environment.
func workerEnv(base []string, extra map[string]string) []string {
	env := append([]string(nil), base...)
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// served and inFlight are w's request counts, kept by the rotation.
func (p *Pool) served(w *worker.Worker) int64 {
	n, _ := p.rot.Counts(w)
	return n
}

func (p *Pool) inFlight(w *worker.Worker) int64 {
	_, n := p.rot.Counts(w)
	return n
}

func joinProblems(problems ...string) string {
	var out []string
	for _, pr := range problems {
		if pr != "" {
			out = append(out, pr)
		}
	}
	return strings.Join(out, "; ")
}
