package config

import (
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Values that may hold secrets (a worker's DATABASE_URL or secret key, a warm-up request's
// Authorization or Cookie, a login body) are shown masked by Explain, with their length, unless
// it is told to show them: `warmpool check` runs where its output is kept (the systemd unit
// runs it before each start, so it lands in the journal).

// secretKeys are the settings whose values are masked; a map's keys stay visible.
var secretKeys = map[string]bool{"worker.env": true, "headers": true, "body": true}

// notSecretHeaders are warm-up header names shown in clear (Host is what a plan must get
// right); any other header's value is masked.
var notSecretHeaders = map[string]bool{"host": true, "content-type": true, "accept": true, "accept-language": true,
	"accept-encoding": true, "user-agent": true}

// mask is how a secret value of n bytes is shown.
func mask(n int) string { return fmt.Sprintf("<secret, %d bytes>", n) }

// renderMasked is render with secret values masked (an empty one is shown: it hides nothing).
func renderMasked(v reflect.Value, k kind, clear func(mapKey string) bool) string {
	switch {
	case k == kindString && v.Len() > 0:
		return mask(v.Len())
	case k == kindStringMap:
		return renderStringMap(v, func(key, value string) string {
			if clear(key) || value == "" {
				return strconv.Quote(value)
			}
			return mask(len(value))
		})
	}
	return render(v, k)
}

// Explain writes the effective configuration, one line per value with its source, and then
// the warm-up plan as it will run; secret values are masked unless showSecrets.
func (l *Loaded) Explain(w io.Writer, showSecrets bool) {
	type line struct{ key, value, source string }
	var lines []line
	root := reflect.ValueOf(&l.Config).Elem()
	show := func(v reflect.Value, k kind, name string) string {
		if showSecrets || !secretKeys[name] {
			return render(v, k)
		}
		return renderMasked(v, k, func(mapKey string) bool { return name == "headers" && notSecretHeaders[strings.ToLower(mapKey)] })
	}
	for _, key := range leafKeys {
		fd, _ := lookup(key)
		lines = append(lines, line{key, show(root.FieldByIndex(fd.index), fd.kind, key), l.Source(key).String()})
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
			lines = append(lines, line{key, show(ev.FieldByIndex(fd.index), fd.kind, n), l.Source(key).String()})
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
				switch {
				case strings.EqualFold(k, "Host"):
					host = v
				case showSecrets || notSecretHeaders[strings.ToLower(k)]:
					extra = append(extra, k+": "+v)
				default:
					extra = append(extra, k+": "+mask(len(v)))
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
	learning := "; learning from traffic is off (warmup.learn = false)"
	if wu.Learn {
		learning = "; learning from traffic: paths new workers meet cold join the plan after it"
		if l.Config.Worker.IsPython() {
			learning += ", and the modules forked workers import join the template"
		}
	}
	if l.Config.Worker.IsPython() {
		return fmt.Sprintf("warm-up: ENABLED, %s to %s, timeout %s; it warms each generation's template (one request at a time), then each worker forked from it (concurrency %d, for its own connections) before admission%s",
			plural(total, "request"), plural(len(paths), "path"), wu.Timeout.Duration, l.Config.WarmupConcurrency(), learning)
	}
	if wu.Ready == ReadyNotify {
		ready = "after READY=1 on its NOTIFY_SOCKET"
	}
	return fmt.Sprintf("warm-up: ENABLED, %s to %s, concurrency %d, timeout %s; each worker is warmed %s, then admitted%s",
		plural(total, "request"), plural(len(paths), "path"), l.Config.WarmupConcurrency(), wu.Timeout.Duration, ready, learning)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
