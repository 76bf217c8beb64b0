package learn

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"warmpool/internal/telemetry"
)

// A new worker's first request to a path counts as cold when it is slower than the pool's
// steady median for the path by both coldFactor and coldFloor; a path becomes a learned
// request once new workers met it cold minWorkers times (one slow request proves nothing), and
// a module once minChildren children imported it after their fork.
const (
	coldFactor  = 2.0
	coldFloor   = 10 * time.Millisecond
	minWorkers  = 2
	minChildren = 2
	firstKept   = 16 // recent first-request latencies kept per path, for the metrics
	// rebuildWorth: a learned request whose mean cold cost is below it makes no rebuild (a
	// template boot and a roll of every worker) by itself: each worker's own warm-up pays it, in
	// private, until a module makes one. Learned modules always do: an import is what a fork
	// pays most.
	rebuildWorth = 50 * time.Millisecond
)

// Options configure a Learner.
type Options struct {
	// Python: the app's workers are forked from a template; modules are learned too.
	Python bool
	// StatePath is the state file ("" keeps what is learned in memory only).
	StatePath string
	// Identity names the app the state belongs to (a state file of another app is ignored).
	Identity string
	// SocketDir is where the socket the forked workers report to is made (Python only).
	SocketDir string
	// IsWorker says whether pid is a worker of the pool: only workers' reports are taken.
	IsWorker func(pid int) bool
	// OnRebuild is called (from the Learner's goroutine) when what was learned is due to go into
	// a new template: the pool then calls TakeRebuild.
	OnRebuild func()
	Logger    *slog.Logger
}

// Request is a learned warm-up request.
type Request struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Host   string `json:"host,omitempty"`
}

// Build is what a template generation (or a worker's warm-up) uses of what was learned.
type Build struct {
	Requests []Request // the most costly first
	Modules  []string  // in the order the workers first imported them
}

// pathStat is what is known of one path's first requests on new workers.
type pathStat struct {
	Request
	ColdHits   int           `json:"cold_hits"`
	Excess     time.Duration `json:"excess_total_ns"` // first request minus steady median, summed over cold hits
	Learned    bool          `json:"learned"`
	Dropped    string        `json:"dropped,omitempty"`
	LastWorker int           `json:"-"`
	Workers    int           `json:"workers"` // distinct workers that met it cold (counted up to minWorkers)
	first      []time.Duration
	steady     time.Duration
	// FirstNS and SteadyNS keep first's median and steady in the state file.
	FirstNS    time.Duration `json:"first_ns,omitempty"`
	SteadyNS   time.Duration `json:"steady_ns,omitempty"`
	Ineligible string        `json:"-"` // why it is never learned (credentials, method, status), for the status
	FirstSeen  time.Time     `json:"first_seen"`
}

// moduleStat is what is known of one module the forked workers imported after their fork.
type moduleStat struct {
	Name     string    `json:"name"`
	Children int       `json:"children"`
	ImportMS float64   `json:"import_ms,omitempty"` // measured by the template that imported it
	Implied  bool      `json:"implied,omitempty"`   // imported already by another's import when its turn came
	Learned  bool      `json:"learned"`
	Dropped  string    `json:"dropped,omitempty"`
	Seq      int       `json:"seq"` // first-seen order
	LastPID  int       `json:"-"`
	SeenAt   time.Time `json:"first_seen"`
}

// Learner gathers what new workers met cold and what forked workers imported, keeps it in its
// state file, and says when a template rebuild is due. New has no side effects; Start loads
// the state and listens; Close stops and saves.
type Learner struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	planned  map[string]bool      // the operator's plan, by method and path: never learned
	paths    map[string]*pathStat // by method and path
	modules  map[string]*moduleStat
	seq      int
	sched    schedule
	dirty    bool           // changed since the last save
	rebuilds map[string]int // started rebuilds by reason
	outcomes map[string]int // finished rebuilds by outcome
	rejected int            // reports from processes that are no worker
	saveErr  telemetry.Repeats
	building string // the reason of the rebuild under way; "" when none

	reports *reportSocket
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New returns a learner; nothing runs until Start.
func New(opts Options) *Learner {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.IsWorker == nil {
		opts.IsWorker = func(int) bool { return false }
	}
	return &Learner{opts: opts, log: log, paths: map[string]*pathStat{}, modules: map[string]*moduleStat{},
		rebuilds: map[string]int{}, outcomes: map[string]int{}, stop: make(chan struct{})}
}

// Start loads the state file (a missing one is no error), opens the socket forked workers
// report to (Python apps) and starts the goroutine that schedules rebuilds and saves the state.
func (l *Learner) Start() error {
	if err := l.load(); err != nil {
		l.log.Warn("the learned warm-up state cannot be read: learning starts afresh", "state", l.opts.StatePath, "error", err)
	}
	if l.opts.Python && l.opts.SocketDir != "" {
		rs, err := listenReports(reportSocketPath(l.opts.SocketDir))
		if err != nil {
			return fmt.Errorf("learn: %w", err)
		}
		l.reports = rs
		l.wg.Go(func() { rs.serve(l.fromWorker) })
	}
	l.wg.Go(l.tick)
	return nil
}

// Close stops the goroutines and saves the state.
func (l *Learner) Close(ctx context.Context) error {
	select {
	case <-l.stop:
		return nil
	default:
		close(l.stop)
	}
	if l.reports != nil {
		l.reports.close()
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.save()
}

// ReportSocket is the path forked workers send the modules they import to; "" when modules are
// not learned.
func (l *Learner) ReportSocket() string {
	if l == nil || l.reports == nil {
		return ""
	}
	return l.reports.path
}

// tick checks each second whether a rebuild is due, and saves what changed at most every 5 s.
func (l *Learner) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastSave := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case now := <-t.C:
			l.mu.Lock()
			due := l.building == "" && l.sched.due(now)
			save := l.dirty && now.Sub(lastSave) >= 5*time.Second
			l.mu.Unlock()
			if due && l.opts.OnRebuild != nil {
				l.opts.OnRebuild()
			}
			if save {
				lastSave = now
				if err := l.save(); err != nil {
					if first, _, _ := l.saveErr.Seen(err.Error()); first {
						l.log.Warn("cannot write the learned warm-up state; what is learned is kept in memory and lost at a restart",
							"state", l.opts.StatePath, "error", err)
					}
				} else {
					l.saveErr.Reset()
				}
			}
		}
	}
}

// ObserveFirst takes a new worker's request among its first (the warm-up check's feed).
func (l *Learner) ObserveFirst(req *telemetry.Request, steady time.Duration, hasSteady bool) {
	if l == nil {
		return
	}
	if learnablePath(req.Path) != "" {
		return // not even kept: a path with a secret in it is shown nowhere
	}
	key := req.Method + " " + req.Path
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.planned[key] {
		return // the plan sends it already
	}
	ps := l.paths[key]
	if ps == nil {
		if len(l.paths) >= maxPaths {
			return
		}
		ps = &pathStat{Request: Request{Method: req.Method, Path: req.Path}, FirstSeen: time.Now()}
		l.paths[key] = ps
	}
	if len(ps.first) == firstKept {
		copy(ps.first, ps.first[1:])
		ps.first = ps.first[:firstKept-1]
	}
	ps.first = append(ps.first, req.Upstream)
	if hasSteady {
		ps.steady = steady
	}
	cold := hasSteady && float64(req.Upstream) >= coldFactor*float64(steady) && req.Upstream-steady >= coldFloor
	if !cold || ps.Learned || ps.Dropped != "" {
		return
	}
	switch {
	case !learnableMethod(req.Method):
		ps.Ineligible = "only GET and HEAD are learned"
		return
	case req.Credentials:
		ps.Ineligible = "requests with credentials are never learned"
		return
	case req.Status < 200 || req.Status > 299:
		ps.Ineligible = fmt.Sprintf("answered %d: only 2xx is learned", req.Status)
		return
	}
	ps.Ineligible = ""
	ps.ColdHits++
	ps.Excess += req.Upstream - steady
	if ps.Host == "" && len(req.Host) > 0 && len(req.Host) <= 255 {
		ps.Host = string(req.Host)
	}
	if req.WorkerID != ps.LastWorker {
		ps.LastWorker = req.WorkerID
		ps.Workers = min(ps.Workers+1, minWorkers)
	}
	l.dirty = true
	if ps.Workers >= minWorkers {
		ps.Learned = true
		// A command's workers run it from their next warm-up on: nothing to rebuild.
		if l.opts.Python && ps.Excess/time.Duration(ps.ColdHits) >= rebuildWorth {
			l.sched.learned(time.Now(), reasonRequests)
		}
		l.log.Info("learned a warm-up request: new workers met this path cold", "method", ps.Method, "path", ps.Path,
			"cold_hits", ps.ColdHits, "excess_mean", (ps.Excess / time.Duration(ps.ColdHits)).Round(time.Millisecond))
	}
}

// SetPlan tells the learner the operator's plan (at the start, and at each reload): its
// requests are never learned again.
func (l *Learner) SetPlan(planned []Request) {
	if l == nil {
		return
	}
	set := make(map[string]bool, len(planned))
	for _, r := range planned {
		set[r.Method+" "+r.Path] = true
	}
	l.mu.Lock()
	l.planned = set
	l.mu.Unlock()
}

// fromWorker takes the modules a forked worker (pid) imported after its fork.
func (l *Learner) fromWorker(pid int, names []string) {
	if !l.opts.IsWorker(pid) {
		l.mu.Lock()
		l.rejected++
		l.mu.Unlock()
		l.log.Debug("ignored a module report from a process that is no worker", "pid", pid)
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var learned []string
	count := l.learnedModulesLocked() // once per report, not once per module
	for _, name := range names {
		if !validModule(name) {
			continue
		}
		ms := l.modules[name]
		if ms == nil {
			if len(l.modules) >= maxTracked {
				continue
			}
			l.seq++
			ms = &moduleStat{Name: name, Seq: l.seq, SeenAt: now}
			l.modules[name] = ms
		}
		if ms.LastPID == pid {
			continue // the same worker again (a module removed and imported anew)
		}
		ms.LastPID = pid
		ms.Children++
		l.dirty = true
		if !ms.Learned && ms.Dropped == "" && ms.Children >= minChildren && count < MaxModules {
			ms.Learned = true
			learned = append(learned, name)
			count++
		}
	}
	if len(learned) > 0 {
		l.sched.learned(now, reasonModules)
		l.log.Info("learned modules that forked workers import after their fork", "modules", len(learned), "first", learned[0])
	}
}

func (l *Learner) learnedModulesLocked() int {
	n := 0
	for _, m := range l.modules {
		if m.Learned && m.Dropped == "" {
			n++
		}
	}
	return n
}

// Current is what was learned and not dropped, for a template or plan built now.
func (l *Learner) Current() Build {
	if l == nil {
		return Build{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buildLocked()
}

// Requests are the learned requests not dropped, the most costly first: a worker's warm-up.
func (l *Learner) Requests() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requestsLocked()
}

func (l *Learner) buildLocked() Build {
	b := Build{Requests: l.requestsLocked()}
	var mods []*moduleStat
	for _, ms := range l.modules {
		if ms.Learned && ms.Dropped == "" {
			mods = append(mods, ms)
		}
	}
	slices.SortFunc(mods, func(a, b *moduleStat) int { return a.Seq - b.Seq })
	for _, ms := range mods[:min(len(mods), MaxModules)] {
		b.Modules = append(b.Modules, ms.Name)
	}
	return b
}

func (l *Learner) requestsLocked() []Request {
	var out []Request
	var reqs []*pathStat
	for _, ps := range l.paths {
		if ps.Learned && ps.Dropped == "" {
			reqs = append(reqs, ps)
		}
	}
	// The most costly first: what new workers lost to each, in all.
	slices.SortFunc(reqs, func(a, b *pathStat) int {
		if a.Excess != b.Excess {
			if a.Excess > b.Excess {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Path, b.Path)
	})
	for _, ps := range reqs[:min(len(reqs), MaxRequests)] {
		out = append(out, ps.Request)
	}
	return out
}

// TakeRebuild hands the pool what was learned for a rebuild it starts now, and why ("" and
// false when nothing new waits, or a rebuild is under way). The pool reports its end with
// RebuildDone.
func (l *Learner) TakeRebuild() (b Build, reason string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.building != "" || l.sched.pending.IsZero() {
		return Build{}, "", false
	}
	b = l.buildLocked()
	reason = l.sched.reason()
	l.building = reason
	l.sched.started(time.Now())
	l.rebuilds[reason]++
	return b, reason, true
}

// RebuildDone records how the rebuild under way ended: err nil means its template was ready and
// the workers roll to it; otherwise the template that served keeps serving.
func (l *Learner) RebuildDone(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.building = ""
	if err != nil {
		l.outcomes["failed"]++
		return
	}
	l.outcomes["ready"]++
}

// Preloaded records what each learned module cost the template that imported it (costs, ms),
// and which came with another's import (implied): `warmpool learned` lists the ones to import.
func (l *Learner) Preloaded(costs map[string]float64, implied []string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, ms := range costs {
		if m := l.modules[name]; m != nil {
			m.ImportMS, m.Implied = ms, false
			l.dirty = true
		}
	}
	for _, name := range implied {
		if m := l.modules[name]; m != nil && !m.Implied {
			m.Implied = true
			l.dirty = true
		}
	}
}

// DropModule keeps a learned module out of every template from now on, and says why in a WARN.
func (l *Learner) DropModule(name, why string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	m := l.modules[name]
	first := m != nil && m.Dropped == ""
	if first {
		m.Dropped, l.dirty = why, true
	}
	l.mu.Unlock()
	if first {
		l.log.Warn("dropped a learned module: the template does not import it again", "module", name, "reason", why)
	}
}

// DropRequest keeps a learned request out of every warm-up from now on, and says why in a WARN.
func (l *Learner) DropRequest(method, path, why string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	ps := l.paths[method+" "+path]
	first := ps != nil && ps.Dropped == ""
	if first {
		ps.Dropped, l.dirty = why, true
	}
	l.mu.Unlock()
	if first {
		l.log.Warn("dropped a learned warm-up request: no warm-up sends it again", "method", method, "path", path, "reason", why)
	}
}
