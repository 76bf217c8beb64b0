package config

import (
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// Explain writes the effective configuration, one line per value with its source, and then
// the warm-up plan as it will run.
func (l *Loaded) Explain(w io.Writer) {
	type line struct{ key, value, source string }
	var lines []line
	root := reflect.ValueOf(&l.Config).Elem()
	for _, key := range leafKeys {
		fd, _ := lookup(key)
		lines = append(lines, line{key, render(root.FieldByIndex(fd.index), fd.kind), l.Source(key).String()})
	}
	names := make([]string, 0, len(requestTable.fields))
	for n := range requestTable.fields {
		names = append(names, n)
	}
	// In declaration order: path, method, headers, ...
	sort.Slice(names, func(i, j int) bool {
		return requestTable.fields[names[i]].index[0] < requestTable.fields[names[j]].index[0]
	})
	for i := range l.Config.Warmup.Requests {
		ev := root.FieldByName("Warmup").FieldByName("Requests").Index(i)
		for _, n := range names {
			fd := requestTable.fields[n]
			key := fmt.Sprintf("warmup.request[%d].%s", i, n)
			lines = append(lines, line{key, render(ev.FieldByIndex(fd.index), fd.kind), l.Source(key).String()})
		}
	}
	kw, vw := 0, 0
	for _, ln := range lines {
		kw, vw = max(kw, len(ln.key)), max(vw, len(ln.value))
	}
	vw = min(vw, 48)
	for _, ln := range lines {
		fmt.Fprintf(w, "%-*s = %-*s  # %s\n", kw, ln.key, vw, ln.value, ln.source)
	}
	fmt.Fprintf(w, "\n%s\n", l.WarmupSummary())
	if l.Config.Warmup.Enabled {
		for i, r := range l.Config.Warmup.Requests {
			host := "localhost"
			var extra []string
			for k, v := range r.Headers {
				if strings.EqualFold(k, "Host") {
					host = v
				} else {
					extra = append(extra, k+": "+v)
				}
			}
			sort.Strings(extra)
			expect := "2xx"
			if len(r.Expect) > 0 {
				parts := make([]string, len(r.Expect))
				for j, s := range r.Expect {
					parts[j] = fmt.Sprint(s)
				}
				expect = strings.Join(parts, " or ")
			}
			fmt.Fprintf(w, "  %d. %s %s  Host: %s", i+1, r.Method, r.Path, host)
			for _, h := range extra {
				fmt.Fprintf(w, "  %s", h)
			}
			if r.Body != "" {
				fmt.Fprintf(w, "  body: %d bytes", len(r.Body))
			}
			fmt.Fprintf(w, "  expect %s  x%d\n", expect, r.Repeat)
		}
	}
}

// WarmupSummary is the one-line statement of the warm-up plan that the start log, `warmpool
// check` and the status show.
func (l *Loaded) WarmupSummary() string {
	wu := &l.Config.Warmup
	if !wu.Enabled {
		return fmt.Sprintf("warm-up: DISABLED by warmup.enabled = false (%s)", l.Source("warmup.enabled"))
	}
	total, paths := 0, map[string]bool{}
	for _, r := range wu.Requests {
		total += max(r.Repeat, 1)
		paths[r.Path] = true
	}
	ready := "when its socket accepts connections"
	if l.Config.Worker.IsPython() {
		return fmt.Sprintf("warm-up: ENABLED, %s to %s, timeout %s; it warms each generation's template (one request at a time), then each worker forked from it (concurrency %d, for its own connections) before admission",
			plural(total, "request"), plural(len(paths), "path"), wu.Timeout.Duration, l.Config.WarmupConcurrency())
	}
	if wu.Ready == ReadyNotify {
		ready = "after READY=1 on its NOTIFY_SOCKET"
	}
	return fmt.Sprintf("warm-up: ENABLED, %s to %s, concurrency %d, timeout %s; each worker is warmed %s, then admitted",
		plural(total, "request"), plural(len(paths), "path"), l.Config.WarmupConcurrency(), wu.Timeout.Duration, ready)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
