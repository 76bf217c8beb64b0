package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// One watchdog goroutine keeps the front's time limits on both paths, rather than a timer per
// request: the wait for a response head (the request timeout), a write to a client that does
// not read (the send timeout), and a client that left while a worker works for it. Lean
// connections are watched for their life, each request of the net/http fallback while it
// waits for its head; each watched thing says what it checks.

// watched is something the watchdog looks at a few times per timeout.
type watched interface {
	watch(now int64, opts *Options)
}

// watchdog is the Front's: Start launches it, Close stops it.
type watchdog struct {
	mu    sync.Mutex
	items map[watched]struct{}
	stop  chan struct{}
	once  sync.Once
}

func (d *watchdog) track(w watched) {
	d.mu.Lock()
	if d.items == nil {
		d.items = map[watched]struct{}{}
	}
	d.items[w] = struct{}{}
	d.mu.Unlock()
}

func (d *watchdog) untrack(w watched) {
	d.mu.Lock()
	delete(d.items, w)
	d.mu.Unlock()
}

// run checks every watched thing each interval until stop is closed.
func (d *watchdog) run(opts func() *Options) {
	t := time.NewTimer(watchdogInterval(opts()))
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		o := opts()
		now := time.Now().UnixNano()
		d.mu.Lock()
		for w := range d.items {
			w.watch(now, o)
		}
		d.mu.Unlock()
		t.Reset(watchdogInterval(o))
	}
}

// watchdogInterval is how often the watchdog looks: a timeout fires at most this late, and a
// client that left is noticed within it.
func watchdogInterval(o *Options) time.Duration {
	d := time.Second
	for _, timeout := range []time.Duration{o.RequestTimeout, o.SendTimeout} {
		if timeout > 0 {
			d = min(d, max(timeout/20, 5*time.Millisecond))
		}
	}
	return d
}

// headWait is a wait for a response head on a worker connection until a deadline, which the
// watchdog cuts by setting the connection's read deadline in the past.
type headWait struct {
	wc    atomic.Pointer[Conn]
	until atomic.Int64 // Unix ns; 0: nothing awaited; -1: the watchdog cut the wait
}

// start begins waiting on wc until the deadline.
func (h *headWait) start(wc *Conn, until time.Time) {
	h.wc.Store(wc)
	h.until.Store(until.UnixNano())
}

// stop ends the wait; false when the watchdog cut it first.
func (h *headWait) stop() bool {
	until := h.until.Load()
	return until != -1 && h.until.CompareAndSwap(until, 0)
}

// cutIfOverdue is the watchdog's check.
func (h *headWait) cutIfOverdue(now int64) {
	until := h.until.Load()
	if until > 0 && now > until && h.until.CompareAndSwap(until, -1) {
		if wc := h.wc.Load(); wc != nil {
			wc.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

func (h *headWait) watch(now int64, _ *Options) { h.cutIfOverdue(now) }
