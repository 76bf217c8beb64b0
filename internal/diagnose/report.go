package diagnose

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Write prints the report: the warm-up's outcome, a table per path, and what to do.
func (r *Report) Write(w io.Writer) {
	switch {
	case !r.WarmupEnabled:
		fmt.Fprintln(w, "warm-up: DISABLED (warmup.enabled = false): the second worker got no warm-up")
	case r.WarmupErr != nil:
		fmt.Fprintf(w, "warm-up: FAILED on the second worker: %v\n", r.WarmupErr)
		fmt.Fprintln(w, "  (warmpool run would never admit such a worker; measured anyway to show what stays cold)")
	default:
		fmt.Fprintf(w, "warm-up: passed on the second worker: %d requests in %s\n", r.Warmup.Requests, r.Warmup.Duration.Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "request\tcold first request\twarmed first request\tsteady\twarm-up")
	for _, row := range r.Rows {
		verdict := "covered"
		if !row.Covered {
			verdict = fmt.Sprintf("NOT COVERED: %.0fx steady", float64(row.Warmed.Took)/float64(max(row.Steady, time.Microsecond)))
		}
		name := row.Probe.String()
		if !row.FromPlan {
			name += " (--path)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, show(row.Cold), show(row.Warmed), dur(row.Steady), verdict)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, row := range r.Rows {
		if row.FromPlan && row.Warmed.Status >= 400 {
			fmt.Fprintf(w, "note: the warm-up request %s answers %d: an error status usually means it stopped before the slow code (a host check, auth, a missing route).\n",
				row.Probe, row.Warmed.Status)
		}
	}
	if n := len(r.ErrorAnswers()); n > 0 {
		fmt.Fprintf(w, "%d warm-up request(s) answered with an error: the warm-up does not reach the code it is meant to warm (run with --allow-error-answers if that is intended).\n", n)
	}
	if n := r.Uncovered(); n > 0 {
		var names []string
		for _, row := range r.Rows {
			if !row.Covered {
				names = append(names, row.Probe.String())
			}
		}
		fmt.Fprintf(w, "%d of %d requests stay cold after the warm-up plan (%s): add [[warmup.request]] entries that reach them, with a Host header your app accepts.\n",
			n, len(r.Rows), strings.Join(names, ", "))
		return
	}
	if len(r.ErrorAnswers()) > 0 {
		// Fast, but fast at an error: the plan does not reach the code, whatever the timings say.
		fmt.Fprintf(w, "The other requests measured were warm after the plan (warmed first request within %.0fx or %s of steady).\n", r.Factor, r.Floor)
		return
	}
	fmt.Fprintf(w, "The warm-up plan covers every request measured (warmed first request within %.0fx or %s of steady).\n", r.Factor, r.Floor)
}

func show(m Measure) string {
	if m.Err != "" {
		return "error: " + m.Err
	}
	return fmt.Sprintf("%s (%d)", dur(m.Took), m.Status)
}

func dur(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

// ErrorAnswers are the warm-up plan's requests that got a 4xx or 5xx on the warmed worker (or
// failed the warm-up outright).
func (r *Report) ErrorAnswers() []string {
	var out []string
	for _, row := range r.Rows {
		if row.FromPlan && row.Warmed.Status >= 400 {
			out = append(out, row.Probe.String())
		}
	}
	return out
}
