package telemetry

import (
	"regexp"
	"sync"
	"time"
)

// Repeats tells a failure seen for the first time from the same failure again, so that a crash
// loop is logged once in full and then counted: "same failure again, N times since T". A
// failure is the same when its text is, numbers aside (worker ids, pids, ports differ between
// attempts; the cause does not). The zero value is ready; it is safe for concurrent use.
type Repeats struct {
	mu    sync.Mutex
	key   string
	times int
	since time.Time
}

// Seen records a failure described by text: first is true when it differs from the last one
// (log it in full); otherwise times counts its repeats so far and since is when it was first
// seen.
func (r *Repeats) Seen(text string) (first bool, times int, since time.Time) {
	key := digits.ReplaceAllString(text, "N")
	r.mu.Lock()
	defer r.mu.Unlock()
	if key != r.key {
		r.key, r.times, r.since = key, 0, time.Now()
		return true, 0, r.since
	}
	r.times++
	return false, r.times, r.since
}

// Reset forgets the last failure: the next one is logged in full (after a success).
func (r *Repeats) Reset() {
	r.mu.Lock()
	r.key, r.times = "", 0
	r.mu.Unlock()
}

var digits = regexp.MustCompile(`[0-9]+`)
