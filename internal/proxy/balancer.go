package proxy

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"warmpool/internal/worker"
)

// Errors returned by Acquire.
var (
	ErrQueueFull    = errors.New("all workers are busy and the wait queue is full")
	ErrQueueTimeout = errors.New("no worker became free within the queue timeout")
)

// Balancer holds the workers in rotation and hands them out least-outstanding first.
//
// Leasing and releasing take no lock while no request waits in the queue: the rotation is a
// copy-on-write snapshot and each worker's count of requests in flight an atomic, claimed by
// compare-and-swap below its limit. Under load every request did both under one mutex, and
// with more busy threads than cores a thread preempted while holding it stalled the others
// (the mutex profile showed waits of several microseconds per request). The
// queue, Add and Remove keep the mutex.
type Balancer struct {
	backends atomic.Pointer[[]*backend] // the rotation; replaced, never changed, under mu
	waiting  atomic.Int32               // len(waiters), read without the lock by Release
	turn     atomic.Uint32              // rotates the tie-break of picks that have no hint of their own

	mu           sync.Mutex
	queueSize    int
	queueTimeout time.Duration
	waiters      []*waiter                   // FIFO
	draining     map[*backend]struct{}       // removed with requests still in flight
	all          map[*worker.Worker]*backend // every worker added and not yet forgotten, for Counts
}

type backend struct {
	w         *worker.Worker
	served    atomic.Int64 // client requests given to w (the lease index)
	marks     []*countMark // acted on as served reaches them
	conns     *ConnPool    // kept-alive connections to w; closed when w leaves rotation
	inFlight  atomic.Int32
	limit     int32
	removed   atomic.Bool
	gone      chan struct{} // closed when the pool takes the worker out of rotation
	drained   chan struct{} // closed once removed and its last request finished
	drainOnce sync.Once
}

type waiter struct{ got chan *backend }

type countMark struct {
	worker.CountMark
	once sync.Once
}

// Lease is one request's hold on a worker; Release it exactly once.
type Lease struct {
	b   *backend
	bal *Balancer
	// Index is the request's 1-based index among the worker's client requests.
	Index int64
}

// Worker is the leased worker.
func (l Lease) Worker() *worker.Worker { return l.b.w }

// Conns is the pool of kept-alive connections to the leased worker.
func (l Lease) Conns() *ConnPool { return l.b.conns }

// Gone is closed once the pool has taken the leased worker out of rotation.
func (l Lease) Gone() <-chan struct{} { return l.b.gone }

// NewBalancer returns an empty rotation.
func NewBalancer(queueSize int, queueTimeout time.Duration) *Balancer {
	b := &Balancer{queueSize: queueSize, queueTimeout: queueTimeout, draining: map[*backend]struct{}{}}
	b.backends.Store(&[]*backend{})
	return b
}

func (b *Balancer) rotation() []*backend { return *b.backends.Load() }

// Add puts a worker into rotation with room for limit concurrent requests, acting on each mark
// as its count of client requests reaches it. Only the pool's admission calls it.
func (b *Balancer) Add(w *worker.Worker, limit int, marks ...worker.CountMark) {
	b.mu.Lock()
	defer b.mu.Unlock()
	be := &backend{w: w, limit: int32(min(limit, math.MaxInt32)), gone: make(chan struct{}), drained: make(chan struct{}),
		conns: &ConnPool{dial: w.Dial, maxIdle: max(limit*2, 2)}}
	for _, m := range marks {
		if m.At > 0 && m.Reached != nil {
			be.marks = append(be.marks, &countMark{CountMark: m})
		}
	}
	if b.all == nil {
		b.all = map[*worker.Worker]*backend{}
	}
	if prior := b.all[w]; prior != nil { // back in rotation: its count goes on
		be.served.Store(prior.served.Load())
	}
	b.all[w] = be
	next := append(slices.Clone(b.rotation()), be)
	b.backends.Store(&next)
	b.serveWaitersLocked()
}

// Remove takes a worker out of rotation. The returned channel closes once its in-flight
// requests have finished (for a worker removed before, the same channel).
func (b *Balancer) Remove(w *worker.Worker) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if be := b.all[w]; be != nil && be.removed.Load() {
		return be.drained
	}
	cur := b.rotation()
	for i, be := range cur {
		if be.w == w {
			next := slices.Delete(slices.Clone(cur), i, i+1)
			b.backends.Store(&next)
			// removed is set before inFlight is read, and a lease or release changes inFlight
			// before reading removed: one side always sees the other (see claim and Release).
			be.removed.Store(true)
			close(be.gone)
			be.conns.Close() // idle ones now; those in use when they come back
			if be.inFlight.Load() == 0 {
				be.closeDrained()
			} else {
				b.draining[be] = struct{}{}
			}
			return be.drained
		}
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

// begin counts a request given to be and returns its 1-based index, acting on the marks it
// reached. It never runs under b.mu (a retiring mark takes it).
func (b *Balancer) begin(be *backend) int64 {
	n := be.served.Add(1)
	for _, m := range be.marks {
		if n >= m.At {
			m.once.Do(func() {
				if m.Retire {
					b.Remove(be.w)
				}
				m.Reached()
			})
		}
	}
	return n
}

func (be *backend) closeDrained() { be.drainOnce.Do(func() { close(be.drained) }) }

// SetQueue changes the queue's bounds (on a config reload).
func (b *Balancer) SetQueue(size int, timeout time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queueSize, b.queueTimeout = size, timeout
}

// QueueTimeout is the longest a request waits for a worker.
func (b *Balancer) QueueTimeout() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queueTimeout
}

// Counts are a worker's client requests: given to it so far, and holding one of its slots now
// (a worker kept busy past its 504 until harakiri counts). They stay readable after Remove,
// until Forget.
func (b *Balancer) Counts(w *worker.Worker) (served, inFlight int64) {
	b.mu.Lock()
	be := b.all[w]
	b.mu.Unlock()
	if be == nil {
		return 0, 0
	}
	return be.served.Load(), int64(be.inFlight.Load())
}

// Forget drops what the balancer kept of a worker that left rotation and exited.
func (b *Balancer) Forget(w *worker.Worker) {
	b.mu.Lock()
	delete(b.all, w)
	b.mu.Unlock()
}

// Len is the number of workers in rotation.
func (b *Balancer) Len() int { return len(b.rotation()) }

// InFlight is the number of requests holding a worker's slot or waiting for one.
func (b *Balancer) InFlight() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.waiters)
	for _, be := range b.rotation() {
		n += int(be.inFlight.Load())
	}
	for be := range b.draining {
		n += int(be.inFlight.Load())
	}
	return n
}

// Queued is the number of requests waiting for a worker.
func (b *Balancer) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiters)
}

// Acquire leases the least busy worker with room, waiting in the queue when none has.
func (b *Balancer) Acquire(ctx context.Context) (Lease, error) { return b.AcquireAvoiding(ctx, nil) }

// TryAcquire leases the least busy worker with room (not avoid while another has room), or
// reports false at once when a request would have to queue. hint rotates the tie-break
// between equally busy workers (the front passes a per-connection count), so that no counter
// is shared.
func (b *Balancer) TryAcquire(avoid *worker.Worker, hint int) (Lease, bool) {
	if b.waiting.Load() > 0 {
		return Lease{}, false // first come, first served: queue behind the waiters
	}
	if be := b.claim(avoid, hint, false); be != nil {
		return Lease{be, b, b.begin(be)}, true
	}
	return Lease{}, false
}

// claim takes a slot on the least busy worker with room, or returns nil when none has one.
// locked tells that the caller holds b.mu.
func (b *Balancer) claim(avoid *worker.Worker, hint int, locked bool) *backend {
	for tries := 1; ; tries++ {
		if tries == 8 && !locked {
			// Lost the race seven times: settle it under the lock, where only lock-free
			// claims and releases still compete.
			b.mu.Lock()
			defer b.mu.Unlock()
			locked = true
		}
		be := pick(b.rotation(), avoid, hint)
		if be == nil {
			return nil
		}
		n := be.inFlight.Load()
		if n >= be.limit || !be.inFlight.CompareAndSwap(n, n+1) {
			continue // another request took a slot: look again
		}
		if be.removed.Load() { // removed since the snapshot was read: give the slot back
			b.releaseSlot(be, locked)
			continue
		}
		return be
	}
}

// pick returns the backend with the fewest requests in flight that has room, starting the
// scan at hint so that ties are spread.
func pick(rotation []*backend, avoid *worker.Worker, hint int) *backend {
	n := len(rotation)
	if n == 0 {
		return nil
	}
	start := int(uint(hint) % uint(n))
	var best *backend
	var bestN int32
	for i := range n {
		be := rotation[(start+i)%n]
		in := be.inFlight.Load()
		if in >= be.limit || be.w == avoid {
			continue
		}
		if best == nil || in < bestN {
			best, bestN = be, in
			if in == 0 {
				break
			}
		}
	}
	return best
}

// AcquireAvoiding is Acquire that does not pick avoid (a worker that just refused a connection)
// while another worker has room.
func (b *Balancer) AcquireAvoiding(ctx context.Context, avoid *worker.Worker) (Lease, error) {
	hint := int(b.turn.Add(1))
	if l, ok := b.TryAcquire(avoid, hint); ok {
		return l, nil
	}
	b.mu.Lock()
	// Registered as waiting before looking again: a release that frees a slot now either is
	// seen by this look or sees the waiter (it decrements inFlight before reading waiting).
	b.waiting.Add(1)
	if len(b.waiters) == 0 {
		if be := b.claim(avoid, hint, true); be != nil { // freed meanwhile
			b.waiting.Add(-1)
			b.mu.Unlock()
			return Lease{be, b, b.begin(be)}, nil
		}
	}
	queueTimeout := b.queueTimeout
	if len(b.waiters) >= b.queueSize {
		b.waiting.Add(-1)
		b.mu.Unlock()
		return Lease{}, ErrQueueFull
	}
	wt := &waiter{got: make(chan *backend, 1)}
	b.waiters = append(b.waiters, wt)
	b.serveWaitersLocked() // a slot freed before this waiter was seen goes to the oldest
	b.mu.Unlock()

	timer := time.NewTimer(queueTimeout)
	defer timer.Stop()
	var err error
	select {
	case be := <-wt.got:
		return Lease{be, b, b.begin(be)}, nil
	case <-timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.mu.Lock()
	for i, x := range b.waiters {
		if x == wt {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			b.waiting.Add(-1)
			b.mu.Unlock()
			return Lease{}, err
		}
	}
	b.mu.Unlock()
	// A worker was handed over just as we gave up; its slot is ours to return.
	be := <-wt.got
	l := Lease{be, b, b.begin(be)}
	l.Release()
	return Lease{}, err
}

// Release returns the lease's slot, handing it straight to the oldest waiter if any.
func (l Lease) Release() {
	l.bal.releaseSlot(l.b, false)
}

// releaseSlot frees a slot of be; locked tells that the caller holds b.mu.
func (b *Balancer) releaseSlot(be *backend, locked bool) {
	left := be.inFlight.Add(-1) // before reading removed and waiting: see Remove and AcquireAvoiding
	switch {
	case be.removed.Load():
		if left == 0 {
			if !locked {
				b.mu.Lock()
				defer b.mu.Unlock()
			}
			delete(b.draining, be)
			be.closeDrained()
		}
	case b.waiting.Load() > 0 && !locked:
		b.mu.Lock()
		b.serveWaitersLocked()
		b.mu.Unlock()
	}
}

// serveWaitersLocked gives free slots to the oldest waiters, as long as both remain.
func (b *Balancer) serveWaitersLocked() {
	for len(b.waiters) > 0 {
		be := b.claim(nil, int(b.turn.Add(1)), true)
		if be == nil {
			return
		}
		wt := b.waiters[0]
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
		b.waiting.Add(-1)
		wt.got <- be
	}
}
