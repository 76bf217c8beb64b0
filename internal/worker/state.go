package worker

import (
	"fmt"
	"sync/atomic"
)

// State is where a worker is in its life.
type State int32

// The states, in the order a healthy worker passes through them.
const (
	Starting State = iota // spawned, waiting for its socket or READY=1
	Warming               // running its private warm-up plan
	Ready                 // admitted into rotation
	Draining              // out of rotation, finishing its in-flight requests
	Stopped               // exited after warmpool asked it to
	Failed                // exited on its own, or failed its warm-up
)

var stateNames = [...]string{"starting", "warming", "ready", "draining", "stopped", "failed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText writes the state's name, for the status JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown worker state %q", b)
}

// stateBox holds a State with atomic transitions.
type stateBox struct{ v atomic.Int32 }

func (b *stateBox) load() State { return State(b.v.Load()) }

// advance moves to next unless the worker already reached a terminal state, so a late
// transition (warming after the worker died) never resurrects it.
func (b *stateBox) advance(next State) bool {
	for {
		cur := b.v.Load()
		if State(cur) == Stopped || State(cur) == Failed {
			return false
		}
		if b.v.CompareAndSwap(cur, int32(next)) {
			return true
		}
	}
}
