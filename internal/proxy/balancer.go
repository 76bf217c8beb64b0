package proxy

import (
	"context"
	"errors"
	"sync"
	"time"

	"warmpool/internal/worker"
)

// Errors returned by Acquire.
var (
	ErrQueueFull    = errors.New("all workers are busy and the wait queue is full")
	ErrQueueTimeout = errors.New("no worker became free within the queue timeout")
)

// Balancer holds the workers in rotation and hands them out least-outstanding first.
type Balancer struct {
	queueSize    int
	queueTimeout time.Duration

	mu       sync.Mutex
	backends []*backend
	waiters  []*waiter // FIFO
	next     int       // rotates the tie-break so equal workers share the load
	leased   int       // slots taken, on workers in rotation or draining
}

type backend struct {
	w        *worker.Worker
	inFlight int
	limit    int
	removed  bool
	gone     chan struct{} // closed when the pool takes the worker out of rotation
	drained  chan struct{} // closed once removed and its last request finished
}

type waiter struct{ got chan *backend }

// Lease is one request's hold on a worker; Release it exactly once.
type Lease struct {
	b   *backend
	bal *Balancer
	// Index is the request's 1-based index among the worker's client requests.
	Index int64
}

// Worker is the leased worker.
func (l Lease) Worker() *worker.Worker { return l.b.w }

// Gone is closed once the pool has taken the leased worker out of rotation.
func (l Lease) Gone() <-chan struct{} { return l.b.gone }

// NewBalancer returns an empty rotation.
func NewBalancer(queueSize int, queueTimeout time.Duration) *Balancer {
	return &Balancer{queueSize: queueSize, queueTimeout: queueTimeout}
}

// Add puts a worker into rotation with room for limit concurrent requests. Only the pool's
// admission calls it.
func (b *Balancer) Add(w *worker.Worker, limit int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	be := &backend{w: w, limit: limit, gone: make(chan struct{}), drained: make(chan struct{})}
	b.backends = append(b.backends, be)
	for be.inFlight < be.limit && b.handOffLocked(be) {
	}
}

// Remove takes a worker out of rotation. The returned channel closes once its in-flight
// requests have finished.
func (b *Balancer) Remove(w *worker.Worker) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, be := range b.backends {
		if be.w == w {
			b.backends = append(b.backends[:i], b.backends[i+1:]...)
			be.removed = true
			close(be.gone)
			if be.inFlight == 0 {
				close(be.drained)
			}
			return be.drained
		}
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

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

// Len is the number of workers in rotation.
func (b *Balancer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.backends)
}

// InFlight is the number of requests holding a worker's slot or waiting for one.
func (b *Balancer) InFlight() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.leased + len(b.waiters)
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
// reports false at once when a request would have to queue.
func (b *Balancer) TryAcquire(avoid *worker.Worker) (Lease, bool) {
	b.mu.Lock()
	be := b.pickLocked(avoid)
	if be == nil {
		b.mu.Unlock()
		return Lease{}, false
	}
	be.inFlight++
	b.leased++
	b.mu.Unlock()
	return Lease{be, b, be.w.BeginRequest()}, true
}

// AcquireAvoiding is Acquire that does not pick avoid (a worker that just refused a connection)
// while another worker has room.
func (b *Balancer) AcquireAvoiding(ctx context.Context, avoid *worker.Worker) (Lease, error) {
	if l, ok := b.TryAcquire(avoid); ok {
		return l, nil
	}
	b.mu.Lock()
	if be := b.pickLocked(avoid); be != nil { // freed meanwhile
		be.inFlight++
		b.leased++
		b.mu.Unlock()
		return Lease{be, b, be.w.BeginRequest()}, nil
	}
	queueTimeout := b.queueTimeout
	if len(b.waiters) >= b.queueSize {
		b.mu.Unlock()
		return Lease{}, ErrQueueFull
	}
	wt := &waiter{got: make(chan *backend, 1)}
	b.waiters = append(b.waiters, wt)
	b.mu.Unlock()

	timer := time.NewTimer(queueTimeout)
	defer timer.Stop()
	var err error
	select {
	case be := <-wt.got:
		return Lease{be, b, be.w.BeginRequest()}, nil
	case <-timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.mu.Lock()
	for i, x := range b.waiters {
		if x == wt {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			b.mu.Unlock()
			return Lease{}, err
		}
	}
	b.mu.Unlock()
	// A worker was handed over just as we gave up; its slot is ours to return.
	be := <-wt.got
	l := Lease{be, b, be.w.BeginRequest()}
	l.Release()
	return Lease{}, err
}

// Release returns the lease's slot, handing it straight to the oldest waiter if any.
func (l Lease) Release() {
	b, be := l.bal, l.b
	be.w.EndRequest()
	b.mu.Lock()
	be.inFlight--
	b.leased--
	switch {
	case be.removed:
		if be.inFlight == 0 {
			close(be.drained)
		}
	default:
		b.handOffLocked(be)
	}
	b.mu.Unlock()
}

// handOffLocked gives be's free slot to the oldest waiter, if any.
func (b *Balancer) handOffLocked(be *backend) bool {
	if len(b.waiters) == 0 {
		return false
	}
	wt := b.waiters[0]
	b.waiters[0] = nil
	b.waiters = b.waiters[1:]
	be.inFlight++
	b.leased++
	wt.got <- be
	return true
}

// pickLocked returns the backend with the fewest requests in flight that still has room.
func (b *Balancer) pickLocked(avoid *worker.Worker) *backend {
	n := len(b.backends)
	if n == 0 {
		return nil
	}
	start := b.next % n
	b.next++
	var best *backend
	for i := range n {
		be := b.backends[(start+i)%n]
		if be.inFlight >= be.limit || be.w == avoid {
			continue
		}
		if best == nil || be.inFlight < best.inFlight {
			best = be
			if be.inFlight == 0 {
				break
			}
		}
	}
	return best
}
