// Package loadgen is the benchmarks' open-loop load generator: requests leave at a constant
// rate whatever the server does, and each is timed from its scheduled start, so a stall shows
// in the latency of every request it delayed (no coordinated omission).
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Result of one open-loop run.
type Result struct {
	Latencies []time.Duration // from each request's scheduled start
	// URL is, per request, the index of its URL in RunMix's urls.
	URL      []int
	Errors   int
	FirstErr string
	Cold     int // responses with X-Cold: 1 (the request met a cold start)
	Pids     map[string]bool
}

// Run sends rate requests per second to url for d; every request is bounded by timeout.
func Run(ctx context.Context, url string, rate int, d, timeout time.Duration) Result {
	return RunMix(ctx, []string{url}, rate, d, timeout)
}

// RunMix is Run over several URLs, taken in turn (mixed traffic).
func RunMix(ctx context.Context, urls []string, rate int, d, timeout time.Duration) Result {
	tr := &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: timeout}
	total := int(d.Seconds() * float64(rate))
	res := Result{Latencies: make([]time.Duration, total), URL: make([]int, total), Pids: map[string]bool{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now().Add(20 * time.Millisecond)
	for i := range total {
		at := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(at))
		res.URL[i] = i % len(urls)
		url := urls[i%len(urls)]
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			resp, err := cl.Do(req)
			cold, pid := false, ""
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("GET %s: status %d", req.URL.Path, resp.StatusCode)
				}
				cold = resp.Header.Get("X-Cold") == "1"
				pid = resp.Header.Get("X-Worker-Pid")
			}
			res.Latencies[i] = time.Since(at)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors++
				if res.FirstErr == "" {
					res.FirstErr = err.Error()
				}
			}
			if cold {
				res.Cold++
			}
			if pid != "" {
				res.Pids[pid] = true
			}
		})
	}
	wg.Wait()
	return res
}

// Quantile is the q-quantile (0..1) of the latencies, by the nearest-rank method.
func Quantile(lat []time.Duration, q float64) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[int(float64(len(s)-1)*q)]
}

// Percentiles returns P50, P99 and the maximum.
func Percentiles(lat []time.Duration) (p50, p99, max time.Duration) {
	s := slices.Clone(lat)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0, 0, 0
	}
	return s[(n-1)/2], s[(n-1)*99/100], s[n-1]
}
