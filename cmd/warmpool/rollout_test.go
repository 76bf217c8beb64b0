package main

import (
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// follower plays Kubernetes endpoints in front of pods: it routes only to pods whose /readyz
// answers 200, and notices a change within a poll (100 ms), as endpoints follow readiness.
type follower struct {
	mu    sync.Mutex
	pods  []*pod
	turn  int
	cl    *http.Client
	stop  chan struct{}
	wg    sync.WaitGroup
	polls *http.Client
}

type pod struct {
	front, admin string
	ready        atomic.Bool
}

func newFollower() *follower {
	f := &follower{stop: make(chan struct{}),
		cl:    &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		polls: &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	f.wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
			}
			f.mu.Lock()
			pods := append([]*pod(nil), f.pods...)
			f.mu.Unlock()
			for _, p := range pods {
				resp, err := f.polls.Get("http://" + p.admin + "/readyz")
				p.ready.Store(err == nil && resp.StatusCode == 200)
				if err == nil {
					resp.Body.Close()
				}
			}
		}
	})
	return f
}

func (f *follower) add(p *pod) {
	f.mu.Lock()
	f.pods = append(f.pods, p)
	f.mu.Unlock()
}

func (f *follower) close() {
	close(f.stop)
	f.wg.Wait()
}

// get sends GET path to a ready pod; ok false when none was ready or the request failed.
func (f *follower) get(path string) (cold string, ok bool) {
	f.mu.Lock()
	var ready []*pod
	for _, p := range f.pods {
		if p.ready.Load() {
			ready = append(ready, p)
		}
	}
	f.turn++
	turn := f.turn
	f.mu.Unlock()
	if len(ready) == 0 {
		return "", false
	}
	resp, err := f.cl.Get("http://" + ready[turn%len(ready)].front + path)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("X-Cold"), resp.StatusCode == 200
}

// A rolling update, played without a cluster: an old pod serves; a new pod starts and becomes
// ready only once its workers are warm; the old pod gets SIGTERM and leaves the endpoints
// during its shutdown_delay. Under steady load, no request fails and none meets a cold worker.
func TestRollingUpdateLosesNothing(t *testing.T) {
	body, err := os.ReadFile(testWorkerConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "shutdown_delay = \"2s\"\n"+string(body))
	f := newFollower()
	defer f.close()
	start := func() (*proc, *pod) {
		p := startProc(t, nil, "run", "--config", cfg)
		front, admin := p.addresses()
		pd := &pod{front: front, admin: admin}
		f.add(pd)
		return p, pd
	}
	oldProc, oldPod := start()
	oldProc.waitLines(1, `msg="pool ready"`)
	eventually(t, "the old pod ready", oldPod.ready.Load)
	var sent, failed, cold atomic.Int64
	stopLoad := make(chan struct{})
	var load sync.WaitGroup
	for range 4 {
		load.Go(func() {
			for i := 0; i < 20000; i++ { // bounded in count, and stopped by the test
				select {
				case <-stopLoad:
					return
				default:
				}
				c, ok := f.get("/")
				sent.Add(1)
				if !ok {
					failed.Add(1)
				}
				if c != "false" && ok {
					cold.Add(1)
				}
			}
		})
	}
	newProc, newPod := start()
	newProc.waitLines(1, `msg="pool ready"`)
	eventually(t, "the new pod ready", newPod.ready.Load)
	if err := oldProc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := oldProc.wait(); err != nil {
		t.Fatalf("old pod exit: %v; output:\n%s", err, oldProc.output())
	}
	// Some load on the new pod alone.
	for before, deadline := sent.Load(), time.Now().Add(10*time.Second); sent.Load() < before+100 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	close(stopLoad)
	load.Wait()
	newProc.cmd.Process.Signal(syscall.SIGTERM)
	newProc.wait()
	if sent.Load() < 100 || failed.Load() != 0 || cold.Load() != 0 {
		t.Fatalf("%d requests: %d failed, %d met a cold worker", sent.Load(), failed.Load(), cold.Load())
	}
}
