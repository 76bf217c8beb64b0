package learn

import (
	"slices"
	"strings"
	"time"
)

// Status is what was learned, as /status and `warmpool learned` show it.
type Status struct {
	// StateFile is where it is kept ("" when only in memory).
	StateFile string `json:"state_file,omitempty"`
	// NextRebuild is when the next template rebuild may start, when something new waits for one.
	NextRebuild *time.Time `json:"next_rebuild,omitempty"`
	// Rebuilding: a rebuild's template is booting.
	Rebuilding bool `json:"rebuilding,omitempty"`
	Rebuilds   int  `json:"rebuilds"`
	// Requests are the learned requests (the most costly first), then the candidates and the
	// dropped ones.
	Requests []RequestStatus `json:"requests"`
	// Modules are the learned modules in import order, then the dropped ones. Candidates (seen
	// in one worker) are only counted.
	Modules    []ModuleStatus `json:"modules"`
	Candidates int            `json:"module_candidates"`
	// Rejected counts reports from processes that were no worker.
	Rejected int `json:"rejected_reports,omitempty"`
}

// RequestStatus is one path new workers met cold.
type RequestStatus struct {
	Request
	// State is "learned", "candidate" (met cold, not yet by enough workers), "dropped" or
	// "ineligible" (never learned; Why says why).
	State    string `json:"state"`
	Why      string `json:"why,omitempty"`
	ColdHits int    `json:"cold_hits"`
	// ColdCostMS is the mean time new workers lost to it: first request minus steady median.
	ColdCostMS float64 `json:"cold_cost_ms"`
	// FirstMS and SteadyMS are the median of new workers' recent first requests to it and the
	// pool's steady median: close together once learning (or the plan) covers it.
	FirstMS  float64 `json:"first_request_ms,omitempty"`
	SteadyMS float64 `json:"steady_ms,omitempty"`
}

// ModuleStatus is one module forked workers imported after their fork.
type ModuleStatus struct {
	Name     string  `json:"name"`
	State    string  `json:"state"` // "learned" or "dropped"
	Why      string  `json:"why,omitempty"`
	Children int     `json:"children"`
	ImportMS float64 `json:"import_ms,omitempty"`
	// Implied: another module's import brings it (the preload list leaves it out).
	Implied bool `json:"implied,omitempty"`
}

// Status is a snapshot of what was learned.
func (l *Learner) Status() Status {
	if l == nil {
		return Status{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Status{StateFile: l.opts.StatePath, Rebuilding: l.building != "", Rejected: l.rejected}
	for _, n := range l.rebuilds {
		st.Rebuilds += n
	}
	if next := l.sched.next(); !next.IsZero() {
		st.NextRebuild = &next
	}
	built := l.buildLocked()
	rank := map[string]int{}
	for i, r := range built.Requests {
		rank[r.Method+" "+r.Path] = i
	}
	for key, ps := range l.paths {
		first, steady := median(ps.first), ps.steady
		if first == 0 {
			first = ps.FirstNS // as saved: none observed since the start
		}
		if steady == 0 {
			steady = ps.SteadyNS
		}
		rs := RequestStatus{Request: ps.Request, ColdHits: ps.ColdHits, FirstMS: ms(first), SteadyMS: ms(steady)}
		if ps.ColdHits > 0 {
			rs.ColdCostMS = ms(ps.Excess / time.Duration(ps.ColdHits))
		}
		switch {
		case ps.Dropped != "":
			rs.State, rs.Why = "dropped", ps.Dropped
		case ps.Learned:
			rs.State = "learned"
			if _, in := rank[key]; !in {
				rs.State, rs.Why = "candidate", "beyond the most costly learned requests"
			}
		case ps.Ineligible != "":
			rs.State, rs.Why = "ineligible", ps.Ineligible
		case ps.ColdHits > 0:
			rs.State = "candidate"
		default:
			continue // met warm: nothing to show
		}
		st.Requests = append(st.Requests, rs)
	}
	order := map[string]int{"learned": 0, "candidate": 1, "dropped": 2, "ineligible": 3}
	slices.SortFunc(st.Requests, func(a, b RequestStatus) int {
		if order[a.State] != order[b.State] {
			return order[a.State] - order[b.State]
		}
		if a.State == "learned" {
			return rank[a.Method+" "+a.Path] - rank[b.Method+" "+b.Path]
		}
		return strings.Compare(a.Path, b.Path)
	})
	var mods []*moduleStat
	for _, m := range l.modules {
		switch {
		case m.Dropped != "" || m.Learned:
			mods = append(mods, m)
		default:
			st.Candidates++
		}
	}
	slices.SortFunc(mods, func(a, b *moduleStat) int {
		if (a.Dropped == "") != (b.Dropped == "") {
			if a.Dropped == "" {
				return -1
			}
			return 1
		}
		return a.Seq - b.Seq
	})
	for _, m := range mods {
		s := ModuleStatus{Name: m.Name, State: "learned", Children: m.Children, ImportMS: m.ImportMS, Implied: m.Implied}
		if m.Dropped != "" {
			s.State, s.Why = "dropped", m.Dropped
		}
		st.Modules = append(st.Modules, s)
	}
	return st
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
