package pool

import (
	"log/slog"
	"sync"

	"warmpool/internal/worker"
)

// The boot priority policy, decided here for every worker warmpool starts:
//
//   - A boot the pool needs now runs at normal priority: the first start (nothing serves yet),
//     a crash's replacement, a scale-up, and a replacement whose predecessor reached its limit
//     (max_requests, max_lifetime, max_rss) or left. Anything lower only makes clients wait,
//     or lets a worker serve far past the limit that contains its leak.
//   - A replacement that is not needed yet (its predecessor serves below its limit: the early
//     start of max_requests, a reload) boots in the idle CPU class, on CPU time no serving
//     worker wants; it is raised to normal priority the moment it is needed, and to
//     warmup.nice once half its warmup.timeout passed, so that a busy machine slows it but
//     never starves it into a failed boot.
//   - Every worker runs at normal priority once admitted, and stops at normal priority: a drain
//     or a shutdown in the idle class waits for CPU the machine does not give.
//   - A worker past its limit whose replacement is not admitted yet runs at warmup.nice: on a
//     saturated machine it yields CPU to its replacement's boot and serves fewer requests past
//     its limit; the other workers take up the CPU it leaves (the scheduler gives idle CPU to
//     whoever runs). It drains at normal priority.
//
// The template of a Python app runs at warmup.nice while workers serve (normal priority at the
// first start), and forks a needed worker at normal priority (internal/pyfork).

// bootPriority is a booting worker's CPU priority, restored at its admission. The pool's loop
// and the worker's boot goroutine both use it.
type bootPriority struct {
	w    *worker.Worker
	nice int // warmup.nice; 0: priorities are not changed at all
	log  *slog.Logger

	mu       sync.Mutex
	class    bootClass
	restored bool
}

// bootClass is where a boot stands in the policy above.
type bootClass int

// The classes, from lowest to highest priority.
const (
	bootEarly  bootClass = iota // the idle class: not needed yet
	bootLate                    // warmup.nice: not needed yet, and half its warmup.timeout passed
	bootNeeded                  // normal priority
)

func (c bootClass) priority(nice int) worker.Priority {
	switch c {
	case bootEarly:
		return worker.Priority{Idle: true, Nice: nice}
	case bootLate:
		return worker.Priority{Nice: nice}
	default:
		return worker.Priority{}
	}
}

// newBootPriority is w's boot priority: early (the idle class) or needed (normal). With nice 0
// (priorities cannot be restored) nothing is changed and every boot is needed.
func newBootPriority(w *worker.Worker, nice int, early bool, log *slog.Logger) *bootPriority {
	class := bootNeeded
	if early && nice > 0 {
		class = bootEarly
	}
	return &bootPriority{w: w, nice: nice, class: class, log: log}
}

// raiseNeeded raises boots not needed so far until `needed` of them run at normal priority:
// one per worker the pool is missing and per predecessor past its limit.
func raiseNeeded(boots []*member, needed int) {
	have := 0
	for _, m := range boots {
		if m.priority.isNeeded() {
			have++
		}
	}
	for _, m := range boots {
		if have >= needed {
			return
		}
		if !m.priority.isNeeded() {
			m.priority.raise(bootNeeded, "it is needed now: a worker is missing, or the one it replaces reached its limit")
			have++
		}
	}
}

// apply sets the boot priority on every thread the worker runs now (a fork inherits its
// template's priority, so even a needed boot is set). Called after the spawn and again when the
// warm-up starts (threads started since).
func (b *bootPriority) apply() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nice == 0 || b.restored || b.w.PID() == 0 {
		return
	}
	pr := b.class.priority(b.nice)
	if err := b.w.SetPriority(pr); err != nil {
		b.log.Debug("could not set a booting worker's priority", "worker", b.w.ID(), "error", err)
		return
	}
	b.log.Debug("booting worker's CPU priority set", "worker", b.w.ID(), "idle_class", pr.Idle, "nice", pr.Nice)
}

// isEarly says whether the worker boots in the idle class.
func (b *bootPriority) isEarly() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.class == bootEarly && !b.restored
}

// isNeeded says whether the worker boots at normal priority.
func (b *bootPriority) isNeeded() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.class == bootNeeded || b.restored
}

// raise moves the boot to a higher class (never lower); why is for the log. Before the spawn
// it only changes the class, which apply then sets.
func (b *bootPriority) raise(to bootClass, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.restored || to <= b.class {
		return
	}
	b.class = to
	if b.w.PID() == 0 {
		return
	}
	pr := to.priority(b.nice)
	if err := b.w.SetPriority(pr); err != nil {
		b.log.Warn("could not raise a booting worker's priority", "worker", b.w.ID(), "error", err)
		return
	}
	b.log.Info("booting replacement's CPU priority raised", "worker", b.w.ID(), "to", to.String(), "why", why)
}

func (c bootClass) String() string {
	switch c {
	case bootEarly:
		return "idle class"
	case bootLate:
		return "warmup.nice"
	default:
		return "normal priority"
	}
}

// restore gives the worker normal priority, once its warm-up passed.
func (b *bootPriority) restore() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nice == 0 || b.restored {
		return
	}
	b.restored = true
	if b.class == bootNeeded {
		return // it runs at normal priority already
	}
	if err := b.w.SetPriority(worker.Priority{}); err != nil {
		b.log.Warn("could not restore the worker's CPU priority after its warm-up", "worker", b.w.ID(), "error", err)
	}
}
