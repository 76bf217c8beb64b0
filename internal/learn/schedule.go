package learn

import (
	"strings"
	"time"
)

// The rebuild policy: a template is rebuilt when something new was learned, settle after the
// first new item (so that what the same traffic teaches arrives together), and each rebuild
// waits longer after the one before it (as Pitchfork's refork_after grows): the first minutes
// of traffic teach most, and a template that keeps changing costs CPU for less each time.
var (
	settle           = 5 * time.Second
	rebuildIntervals = []time.Duration{15 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour}
)

// The reasons of a rebuild, as warmpool_template_rebuilds_total{reason} counts them: what was
// learned since the last one.
const (
	reasonModules  = "modules"
	reasonRequests = "requests"
)

// reasons lists every reason label, for the metrics.
var reasons = []string{reasonModules, reasonRequests, reasonModules + "+" + reasonRequests}

// schedule decides when a rebuild is due. Not safe for concurrent use: the Learner locks.
type schedule struct {
	rebuilds int       // rebuilds started since the start
	last     time.Time // when the last one started
	pending  time.Time // when the first item not yet in a build was learned; zero: none
	kinds    map[string]bool
}

// learned notes that an item of a kind (reasonModules, reasonRequests) was learned at now.
func (s *schedule) learned(now time.Time, kind string) {
	if s.pending.IsZero() {
		s.pending = now
	}
	if s.kinds == nil {
		s.kinds = map[string]bool{}
	}
	s.kinds[kind] = true
}

// reason is what was learned since the last rebuild: "modules", "requests" or both.
func (s *schedule) reason() string {
	var parts []string
	for _, k := range []string{reasonModules, reasonRequests} {
		if s.kinds[k] {
			parts = append(parts, k)
		}
	}
	return strings.Join(parts, "+")
}

// due reports whether a rebuild should start at now.
func (s *schedule) due(now time.Time) bool {
	if s.pending.IsZero() || now.Before(s.pending.Add(settle)) {
		return false
	}
	return s.rebuilds == 0 || !now.Before(s.last.Add(s.interval()))
}

// next is when due may first say yes, for the status; zero when nothing waits.
func (s *schedule) next() time.Time {
	if s.pending.IsZero() {
		return time.Time{}
	}
	at := s.pending.Add(settle)
	if s.rebuilds > 0 {
		if after := s.last.Add(s.interval()); after.After(at) {
			at = after
		}
	}
	return at
}

// started notes a rebuild taking everything learned so far, at now.
func (s *schedule) started(now time.Time) {
	s.rebuilds++
	s.last = now
	s.pending = time.Time{}
	clear(s.kinds)
}

// interval is the least time between the last rebuild and the next.
func (s *schedule) interval() time.Duration {
	return rebuildIntervals[min(s.rebuilds-1, len(rebuildIntervals)-1)]
}
