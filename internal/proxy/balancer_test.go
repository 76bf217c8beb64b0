package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"warmpool/internal/worker"
)

func newWorkers(n int) []*worker.Worker {
	ws := make([]*worker.Worker, n)
	for i := range ws {
		ws[i] = worker.New(worker.Spec{ID: i + 1})
	}
	return ws
}

func TestLeastOutstandingWithinLimits(t *testing.T) {
	b := NewBalancer(10, time.Second)
	ws := newWorkers(2)
	b.Add(ws[0], 2)
	b.Add(ws[1], 2)
	ctx := context.Background()
	var leases []Lease
	count := map[int]int{}
	for range 4 {
		l, err := b.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
		count[l.Worker().ID()]++
	}
	if count[1] != 2 || count[2] != 2 {
		t.Fatalf("uneven spread or limit broken: %v", count)
	}
	leases[0].Release()
	l, _ := b.Acquire(ctx)
	if l.Worker() != leases[0].Worker() {
		t.Fatalf("the only worker with room is %d, got %d", leases[0].Worker().ID(), l.Worker().ID())
	}
	if servedBy(b, ws[0])+servedBy(b, ws[1]) != 5 {
		t.Fatalf("served counts: %d %d", servedBy(b, ws[0]), servedBy(b, ws[1]))
	}
}

func TestQueueHandOffFullAndTimeout(t *testing.T) {
	b := NewBalancer(1, 50*time.Millisecond)
	w := newWorkers(1)[0]
	b.Add(w, 1)
	ctx := context.Background()
	held, err := b.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx); !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("want queue timeout, got %v", err)
	}

	b2 := NewBalancer(1, time.Minute)
	b2.Add(w, 1)
	held2, _ := b2.Acquire(ctx)
	got := make(chan Lease)
	go func() {
		l, err := b2.Acquire(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	for b2.Queued() != 1 {
		time.Sleep(time.Millisecond) // nothing signals "entered the queue"
	}
	if _, err := b2.Acquire(ctx); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("want queue full, got %v", err)
	}
	held2.Release()
	l := <-got
	if l.Worker() != w {
		t.Fatal("queued request did not get the freed worker")
	}
	l.Release()
	held.Release()
}

func TestAddServesWaitersAndCancel(t *testing.T) {
	b := NewBalancer(5, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error)
	go func() { _, err := b.Acquire(ctx); errs <- err }()
	for b.Queued() != 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if b.Queued() != 0 {
		t.Fatal("cancelled waiter left in queue")
	}
	got := make(chan Lease)
	go func() { l, _ := b.Acquire(context.Background()); got <- l }()
	for b.Queued() != 1 {
		time.Sleep(time.Millisecond)
	}
	w := newWorkers(1)[0]
	b.Add(w, 1) // admission serves the queue at once
	l := <-got
	if l.Worker() != w {
		t.Fatal("waiter not served by the admitted worker")
	}
	l.Release()
}

func TestRemoveDrainsAndAvoid(t *testing.T) {
	b := NewBalancer(5, time.Second)
	ws := newWorkers(2)
	b.Add(ws[0], 4)
	l, _ := b.Acquire(context.Background())
	drained := b.Remove(ws[0])
	select {
	case <-drained:
		t.Fatal("drained with a request in flight")
	default:
	}
	b.Add(ws[1], 4)
	if l2, _ := b.Acquire(context.Background()); l2.Worker() != ws[1] {
		t.Fatal("removed worker picked")
	} else {
		l2.Release()
	}
	l.Release()
	<-drained

	b.Add(ws[0], 4)
	for range 3 {
		l, err := b.AcquireAvoiding(context.Background(), ws[0])
		if err != nil || l.Worker() != ws[1] {
			t.Fatalf("avoid ignored: %v", err)
		}
		l.Release()
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	bal := NewBalancer(10, time.Second)
	for _, w := range newWorkers(8) {
		bal.Add(w, 4)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l, _ := bal.Acquire(ctx)
		l.Release()
	}
}

// InFlight counts leased slots, draining workers' included, and queued requests.
func TestInFlightCountsLeasesAndWaiters(t *testing.T) {
	b := NewBalancer(10, 5*time.Second)
	ws := newWorkers(1)
	b.Add(ws[0], 1)
	l, err := b.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Lease)
	go func() {
		l2, err := b.Acquire(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	for b.Queued() != 1 {
		runtime.Gosched()
	}
	if n := b.InFlight(); n != 2 {
		t.Fatalf("one leased and one queued: InFlight %d", n)
	}
	b.Remove(ws[0]) // draining: its slots still count
	l.Release()     // hands nothing to the waiter: the worker left rotation
	if n := b.InFlight(); n != 1 {
		t.Fatalf("after the release: InFlight %d", n)
	}
	b.Add(ws[0], 1) // back in rotation: the waiter gets the slot
	l2 := <-got
	if n := b.InFlight(); n != 1 {
		t.Fatalf("the waiter leased: InFlight %d", n)
	}
	l2.Release()
	if n := b.InFlight(); n != 0 {
		t.Fatalf("all released: InFlight %d", n)
	}
}

// Many requests leasing at once, some queued, never exceed a worker's limit, and every queued
// one is served (a release racing a new waiter loses no wake-up).
func TestConcurrentLeasesKeepLimitsAndServeWaiters(t *testing.T) {
	const limit, goroutines, rounds = 2, 24, 400
	b := NewBalancer(goroutines, 30*time.Second)
	ws := newWorkers(3)
	var busy [4]atomic.Int32 // by worker id
	for _, w := range ws {
		b.Add(w, limit)
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				var l Lease
				var err error
				ok := false
				if (g+i)%2 == 0 {
					l, ok = b.TryAcquire(nil, g+i) // the front's lock-free path
				}
				if !ok {
					l, err = b.Acquire(context.Background()) // the queue
				}
				if err != nil {
					errs <- err
					return
				}
				id := l.Worker().ID()
				if n := busy[id].Add(1); n > limit {
					errs <- fmt.Errorf("worker %d has %d requests in flight, over its limit of %d", id, n, limit)
				}
				runtime.Gosched()
				busy[id].Add(-1)
				l.Release()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, q := b.InFlight(), b.Queued(); n != 0 || q != 0 {
		t.Fatalf("after all releases: InFlight %d, Queued %d", n, q)
	}
	var served int64
	for _, w := range ws {
		served += servedBy(b, w)
	}
	if served != goroutines*rounds {
		t.Fatalf("served %d leases, want %d", served, goroutines*rounds)
	}
}

// Workers leaving and rejoining the rotation while requests lease: every lease is served,
// nothing is leased from a worker after its drain completed, and each drain completes.
func TestLeasesDuringRemoveAndAdd(t *testing.T) {
	const goroutines, rounds = 16, 300
	b := NewBalancer(goroutines, 30*time.Second)
	ws := newWorkers(2)
	b.Add(ws[0], 2)
	b.Add(ws[1], 2)
	var drainedFlag [3]atomic.Bool // by worker id: set while its drain is complete and it is out
	var churn, leasing sync.WaitGroup
	errs := make(chan error, goroutines)
	stop := make(chan struct{})
	churn.Go(func() { // churn: worker 1 leaves, drains, comes back
		for {
			select {
			case <-stop:
				return
			default:
			}
			drained := b.Remove(ws[0])
			<-drained
			drainedFlag[1].Store(true)
			runtime.Gosched()
			drainedFlag[1].Store(false)
			b.Add(ws[0], 2)
		}
	})
	for g := range goroutines {
		leasing.Go(func() {
			for i := range rounds {
				l, ok := b.TryAcquire(nil, g+i)
				if !ok {
					var err error
					if l, err = b.Acquire(context.Background()); err != nil {
						errs <- err
						return
					}
				}
				if id := l.Worker().ID(); drainedFlag[id].Load() {
					errs <- fmt.Errorf("leased worker %d after its drain completed", id)
				}
				l.Release()
			}
		})
	}
	leasing.Wait()
	close(stop)
	churn.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !allServed(b, ws, goroutines*rounds) || b.InFlight() != 0 {
		t.Fatalf("served %d+%d leases of %d; InFlight %d", servedBy(b, ws[0]), servedBy(b, ws[1]), goroutines*rounds, b.InFlight())
	}
}

func allServed(b *Balancer, ws []*worker.Worker, want int64) bool {
	var n int64
	for _, w := range ws {
		n += servedBy(b, w)
	}
	return n >= want
}

func servedBy(b *Balancer, w *worker.Worker) int64 {
	n, _ := b.Counts(w)
	return n
}

// The rotation counts a worker's requests and acts once on each mark it reaches, in order; a
// retiring mark makes the request that reached it the worker's last, before any other request
// can be given to it.
func TestCountsAndMarks(t *testing.T) {
	b := NewBalancer(10, time.Second)
	ws := newWorkers(2)
	var reached []string
	mark := func(name string) func() { return func() { reached = append(reached, name) } }
	b.Add(ws[0], 2, worker.CountMark{At: 3, Reached: mark("due")}, worker.CountMark{At: 4, Reached: mark("limit")},
		worker.CountMark{At: 6, Reached: mark("ceiling"), Retire: true})
	for i := range 6 {
		l, err := b.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if l.Worker() != ws[0] || l.Index != int64(i+1) {
			t.Fatalf("lease %d: worker %d, index %d", i+1, l.Worker().ID(), l.Index)
		}
		if served, inFlight := b.Counts(ws[0]); served != int64(i+1) || inFlight != 1 {
			t.Fatalf("counts after lease %d: %d served, %d in flight", i+1, served, inFlight)
		}
		l.Release()
	}
	if strings.Join(reached, ",") != "due,limit,ceiling" {
		t.Fatalf("marks reached: %v", reached)
	}
	if b.Len() != 0 {
		t.Fatalf("the worker at its retiring mark is still in rotation (%d workers)", b.Len())
	}
	// The pool's drain that follows gets the same drained channel, already closed.
	select {
	case <-b.Remove(ws[0]):
	default:
		t.Fatal("Remove after the retiring mark: its drained channel is not closed, although nothing is in flight")
	}
	b.Add(ws[1], 1)
	if l, err := b.Acquire(context.Background()); err != nil || l.Worker() != ws[1] {
		t.Fatalf("next request: %v, %v", l.Worker(), err)
	} else {
		l.Release()
	}
	if served, _ := b.Counts(ws[0]); served != 6 {
		t.Fatalf("counts after Remove: %d", served)
	}
	b.Forget(ws[0])
	if served, _ := b.Counts(ws[0]); served != 0 {
		t.Fatalf("counts after Forget: %d", served)
	}
}

// A worker removed while its last request is in flight: Remove again returns the same channel,
// which closes when that request ends (the front removes a hung worker, then the pool drains it).
func TestRemoveTwiceWaitsForTheSameRequests(t *testing.T) {
	b := NewBalancer(10, time.Second)
	w := newWorkers(1)[0]
	b.Add(w, 1)
	l, err := b.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first, second := b.Remove(w), b.Remove(w)
	if first != second {
		t.Fatal("a second Remove returned another channel")
	}
	select {
	case <-second:
		t.Fatal("drained while a request is in flight")
	default:
	}
	l.Release()
	<-second
}

// The rule for retrying on another worker: a refused connection, and nothing sent, or only an
// idempotent request sent to a worker that then refused a fresh connection (it died).
func TestRetryElsewhereRule(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	refused := &worker.DialError{WorkerID: 1, Err: syscall.ECONNREFUSED}
	for _, c := range []struct {
		err    error
		sent   bool
		method string
		want   bool
	}{
		{refused, false, "POST", true},
		{refused, true, "GET", true},
		{refused, true, "POST", false},
		{errors.New("read: connection reset by peer"), false, "GET", false},
		{nil, false, "GET", false},
	} {
		if got := retryElsewhere(log, c.err, 1, c.sent, c.method); got != c.want {
			t.Errorf("%v, sent %v, %s: retry %v, want %v", c.err, c.sent, c.method, got, c.want)
		}
	}
	if retryElsewhere(log, refused, maxAttempts, false, "GET") {
		t.Error("retried past maxAttempts")
	}
}
