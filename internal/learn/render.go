package learn

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteConfig prints what st learned as config to commit: [[warmup.request]] tables for the
// learned requests and a [worker.python] preload list for the learned modules, with what each
// cost new workers in comments, and the dropped items as comments. A restart, or another
// machine, with it starts as warm as learning made this one.
func (st Status) WriteConfig(w io.Writer) {
	var reqs []RequestStatus
	for _, r := range st.Requests {
		if r.State == "learned" {
			reqs = append(reqs, r)
		}
	}
	var mods []ModuleStatus
	implied := 0
	for _, m := range st.Modules {
		switch {
		case m.State != "learned":
		case m.Implied:
			implied++ // another's import brings it
		default:
			mods = append(mods, m)
		}
	}
	if len(reqs) == 0 && len(mods) == 0 {
		fmt.Fprintln(w, "# Nothing learned yet: new workers met no path cold, or traffic has not reached them.")
	}
	if len(reqs) > 0 {
		fmt.Fprintln(w, "# Learned warm-up requests, the most costly first: paths new workers met cold. Append")
		fmt.Fprintln(w, "# these tables after your own [[warmup.request]] tables (the plan runs them in order).")
		for _, r := range reqs {
			fmt.Fprintln(w)
			fmt.Fprintf(w, "# a new worker's first request: %s, steady: %s; met cold %d times, %s lost each time\n",
				millis(r.FirstMS), millis(r.SteadyMS), r.ColdHits, millis(r.ColdCostMS))
			fmt.Fprintln(w, "[[warmup.request]]")
			if r.Method != "GET" {
				fmt.Fprintf(w, "method = %s\n", strconv.Quote(r.Method))
			}
			fmt.Fprintf(w, "path = %s\n", strconv.Quote(r.Path))
			if r.Host != "" {
				fmt.Fprintf(w, "headers = { Host = %s }\n", strconv.Quote(r.Host))
			}
		}
	}
	if len(mods) > 0 {
		if len(reqs) > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "# Learned modules: forked workers imported them after their fork, on their first requests.")
		fmt.Fprintln(w, "# Put preload in your [worker.python] table: the template imports them before its warm-up.")
		if implied > 0 {
			fmt.Fprintf(w, "# (%d more learned modules come with these: importing them imports those.)\n", implied)
		}
		fmt.Fprintln(w, "[worker.python]")
		fmt.Fprintln(w, "preload = [")
		width := 0
		for _, m := range mods {
			width = max(width, len(strconv.Quote(m.Name))+1)
		}
		for _, m := range mods {
			note := fmt.Sprintf("imported by %d workers", m.Children)
			if m.ImportMS > 0 {
				note = fmt.Sprintf("%s in the template; ", millis(m.ImportMS)) + note
			}
			fmt.Fprintf(w, "  %-*s # %s\n", width, strconv.Quote(m.Name)+",", note)
		}
		fmt.Fprintln(w, "]")
	}
	var dropped []string
	for _, r := range st.Requests {
		if r.State == "dropped" {
			dropped = append(dropped, fmt.Sprintf("%s %s: %s", r.Method, r.Path, r.Why))
		}
	}
	for _, m := range st.Modules {
		if m.State == "dropped" {
			dropped = append(dropped, fmt.Sprintf("module %s: %s", m.Name, m.Why))
		}
	}
	if len(dropped) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "# Dropped, and never used again:")
		for _, d := range dropped {
			fmt.Fprintf(w, "#   %s\n", strings.ReplaceAll(d, "\n", " "))
		}
	}
}

func millis(ms float64) string {
	switch {
	case ms <= 0:
		return "?"
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	default:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	}
}
