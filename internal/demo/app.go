package demo

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"warmpool/internal/worker"
)

// App is the demo worker's HTTP handler.
type App struct {
	// ColdCost is the CPU burnt by the first request of the process, under a process-wide
	// lock: every request that arrives meanwhile waits, as behind Python's import lock.
	ColdCost time.Duration
	// WorkCost is the CPU burnt by every request.
	WorkCost time.Duration
	// ColdPaths have a lazy init of their own on their first request (a report module, say),
	// also under the process-wide lock.
	ColdPaths map[string]time.Duration

	id       string
	pid      string
	initLock sync.Mutex
	warm     atomic.Bool
	pathWarm sync.Map
	requests atomic.Int64
}

// NewApp returns the demo app for this process.
func NewApp(coldCost, workCost time.Duration, coldPaths map[string]time.Duration) *App {
	return &App{ColdCost: coldCost, WorkCost: workCost, ColdPaths: coldPaths,
		id: os.Getenv(worker.EnvWorkerID), pid: strconv.Itoa(os.Getpid())}
}

// Response headers that let a client see what its request met.
const (
	HeaderWorker       = "X-Worker-Id"
	HeaderPID          = "X-Worker-Pid"
	HeaderRequestIndex = "X-Request-Index"
	// HeaderCold is "1" when the request paid for, or waited on, the cold start.
	HeaderCold = "X-Cold"
)

func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cold := a.ensureWarm()
	if a.ensurePathWarm(r.URL.Path) {
		cold = true
	}
	burn(a.WorkCost)
	n := a.requests.Add(1)
	h := w.Header()
	h.Set(HeaderWorker, a.id)
	h.Set(HeaderPID, a.pid)
	h.Set(HeaderRequestIndex, strconv.FormatInt(n, 10))
	h.Set(HeaderCold, boolDigit(cold))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "hello from demo worker %s (pid %s): request #%d, cold=%v, warm-up=%v\n",
		a.id, a.pid, n, cold, r.Header.Get(worker.WarmupHeader) != "")
}

// ensureWarm runs the cold start once; it reports whether this request met it.
func (a *App) ensureWarm() bool {
	if a.warm.Load() {
		return false
	}
	a.initLock.Lock()
	defer a.initLock.Unlock()
	if !a.warm.Load() {
		burn(a.ColdCost)
		a.warm.Store(true)
	}
	return true
}

// ensurePathWarm runs a path's own lazy init once; it reports whether this request met it.
func (a *App) ensurePathWarm(path string) bool {
	cost, ok := a.ColdPaths[path]
	if !ok {
		return false
	}
	if _, done := a.pathWarm.Load(path); done {
		return false
	}
	a.initLock.Lock()
	defer a.initLock.Unlock()
	if _, done := a.pathWarm.Load(path); !done {
		burn(cost)
		a.pathWarm.Store(path, true)
	}
	return true
}

// burn keeps a CPU busy for d.
func burn(d time.Duration) {
	if d <= 0 {
		return
	}
	deadline := time.Now().Add(d)
	x := uint64(1)
	for time.Now().Before(deadline) {
		for i := 0; i < 1000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	sink.Store(x)
}

var sink atomic.Uint64

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
