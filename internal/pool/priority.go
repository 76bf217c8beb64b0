package pool

import (
	"log/slog"
	"sync"

	"warmpool/internal/worker"
)

// bootPriority is a booting worker's CPU priority (warmup.nice), restored at its admission. A
// replacement for a worker that still serves is not needed yet: it boots in the idle class, on
// CPU time no serving worker wants, so that recycling does not delay client requests. It is
// raised to warmup.nice when the pool needs it (a worker is missing) and when half its
// warmup.timeout has passed, so that a busy machine slows a replacement but never starves it.
// The pool's loop and the worker's boot goroutine both use it.
type bootPriority struct {
	w    *worker.Worker
	nice int // 0: priorities are not lowered at all
	log  *slog.Logger

	mu       sync.Mutex
	idle     bool
	restored bool
}

// newBootPriority is w's boot priority; idle only with a nice value (0: nothing is lowered).
func newBootPriority(w *worker.Worker, nice int, idle bool, log *slog.Logger) *bootPriority {
	return &bootPriority{w: w, nice: nice, idle: idle, log: log}
}

// raiseNeeded raises idle boots until missing of the boots run at warmup.nice: a boot that
// replaces a missing worker is needed now.
func raiseNeeded(boots []*member, missing int) {
	needed := 0
	for _, m := range boots {
		if !m.priority.isIdle() {
			needed++
		}
	}
	for _, m := range boots {
		if needed >= missing {
			return
		}
		if m.priority.isIdle() {
			m.priority.raise("a worker is missing")
			needed++
		}
	}
}

// lower applies the boot priority to every thread the worker runs now.
func (b *bootPriority) lower() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nice == 0 || b.restored {
		return
	}
	if err := b.w.SetPriority(worker.Priority{Idle: b.idle, Nice: b.nice}); err != nil {
		b.log.Debug("could not lower a booting worker's priority", "worker", b.w.ID(), "error", err)
		return
	}
	b.log.Debug("booting worker's CPU priority lowered", "worker", b.w.ID(), "idle_class", b.idle, "nice", b.nice)
}

// isIdle says whether the worker boots in the idle class.
func (b *bootPriority) isIdle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.idle && !b.restored
}

// raise moves an idle boot to warmup.nice; why is for the log.
func (b *bootPriority) raise(why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.idle || b.restored {
		return
	}
	b.idle = false
	if err := b.w.SetPriority(worker.Priority{Nice: b.nice}); err != nil {
		b.log.Warn("could not raise a booting worker's priority", "worker", b.w.ID(), "error", err)
		return
	}
	b.log.Info("booting replacement raised from the idle CPU class to warmup.nice", "worker", b.w.ID(), "why", why)
}

// restore gives the worker normal priority, once its warm-up passed.
func (b *bootPriority) restore() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nice == 0 || b.restored {
		return
	}
	b.restored = true
	if err := b.w.SetPriority(worker.Priority{}); err != nil {
		b.log.Warn("could not restore the worker's CPU priority after its warm-up", "worker", b.w.ID(), "error", err)
	}
}
