package pool

import "testing"

// The lead follows the misses: half of each overshoot is added, half of each undershoot taken
// back, never below 0 nor above half of max_requests.
func TestNextLead(t *testing.T) {
	steps := []struct {
		served int64
		want   float64
	}{
		{110, 5},  // 10 past: start 5 earlier
		{104, 7},  // still 4 past
		{94, 4},   // 6 short: back off
		{300, 50}, // capped at max_requests / 2
		{0, 0},    // floored at 0
	}
	lead := 0.0
	for i, s := range steps {
		lead = nextLead(lead, s.served, 100)
		if lead != s.want {
			t.Fatalf("step %d (served %d): lead %v, want %v", i, s.served, lead, s.want)
		}
	}
}
