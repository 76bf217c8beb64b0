package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"warmpool/bench/benchutil"
)

// postgres is a PostgreSQL server of the test's own, in a temporary directory, on a unix socket.
type postgres struct {
	bin, data, sockets string
	asPostgres         bool // the server refuses to run as root: it runs as the postgres user
}

// startPostgres starts a server or skips when Debian's postgresql is not installed.
func startPostgres(t *testing.T) *postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Skip("PostgreSQL is not installed (apt-get install postgresql; CI installs it)")
	}
	pg := &postgres{bin: filepath.Dir(bins[len(bins)-1]), asPostgres: os.Geteuid() == 0}
	dir, err := os.MkdirTemp("", "warmpool-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pg.data, pg.sockets = filepath.Join(dir, "data"), filepath.Join(dir, "sockets")
	if err := os.Mkdir(pg.sockets, 0o777); err != nil {
		t.Fatal(err)
	}
	if pg.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root and there is no postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{dir, pg.sockets} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	pg.run(t, "initdb", "-D", pg.data, "-A", "trust", "-U", "postgres", "--no-sync")
	pg.run(t, "pg_ctl", "-D", pg.data, "-w", "-l", filepath.Join(dir, "log"), "-o",
		fmt.Sprintf("-k %s -c listen_addresses='' -c fsync=off -c max_connections=200", pg.sockets), "start")
	t.Cleanup(func() { pg.run(t, "pg_ctl", "-D", pg.data, "-w", "-m", "fast", "stop") })
	return pg
}

func (pg *postgres) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	argv := append([]string{filepath.Join(pg.bin, name)}, args...)
	if pg.asPostgres {
		argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// backend is one session in pg_stat_activity, named by the process that opened it.
type backend struct {
	pid     int // the backend's
	opener  int // the pid in application_name "pid-N"
	started time.Time
}

func (pg *postgres) backends(t *testing.T) []backend {
	t.Helper()
	out, err := exec.Command(filepath.Join(pg.bin, "psql"), "-h", pg.sockets, "-U", "postgres", "-At", "-F", " ", "-c",
		"SELECT pid, application_name, extract(epoch FROM backend_start) FROM pg_stat_activity WHERE application_name LIKE 'pid-%'").CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	var bs []backend
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		b := backend{}
		b.pid, _ = strconv.Atoi(f[0])
		b.opener, _ = strconv.Atoi(strings.TrimPrefix(f[1], "pid-"))
		secs, _ := strconv.ParseFloat(f[2], 64)
		b.started = time.Unix(0, int64(secs*1e9))
		bs = append(bs, b)
	}
	return bs
}

// A real database behind forked workers: the template warms against PostgreSQL, closes its
// connection before forking, and every worker opens its own after its fork. Under load through
// 50 recycles no request fails and no session ever serves two processes. The same under ASGI,
// where Django's connections live on asgiref's thread (closed there before the fork; a
// connection left open anywhere would make the template refuse to fork, and fail this test).
func TestPostgresSessionsAreNeverSharedAcrossForks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and warmpool")
	}
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import django, psycopg2, waitress, uvicorn").Run(); err != nil {
		t.Skip("needs Debian's python3-django, python3-psycopg2, python3-waitress and python3-uvicorn (CI installs them)")
	}
	pg := startPostgres(t)
	for _, asgi := range []bool{false, true} {
		t.Run(map[bool]string{false: "wsgi", true: "asgi"}[asgi], func(t *testing.T) { sessionsNeverShared(t, pg, python, asgi) })
	}
}

func sessionsNeverShared(t *testing.T, pg *postgres, python string, asgi bool) {
	site := filepath.Join(benchutil.ModuleRoot(), "bench", "fork", "site")
	env := []string{"BENCH_PG_HOST=" + pg.sockets, "PYTHONDONTWRITEBYTECODE=1"}
	for _, args := range [][]string{{"manage.py", "migrate", "-v0"}, {"manage.py", "seed"}} {
		cmd := exec.Command(python, args...)
		cmd.Dir, cmd.Env = site, append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", args, err, out)
		}
	}
	tmp := t.TempDir()
	wp := filepath.Join(tmp, "warmpool")
	if err := benchutil.Build(context.Background(), wp, "./cmd/warmpool"); err != nil {
		t.Fatal(err)
	}
	addr, admin := benchutil.FreeAddr(), benchutil.FreeAddr()
	// The fork way of the benchmark, on PostgreSQL: its warm-up's ORM queries reach the
	// database in the template, and max_requests 12 makes 50 recycles come quickly.
	w, _ := wayNamed("fork")
	w.env = map[string]string{"BENCH_PG_HOST": pg.sockets}
	w.asgi = asgi
	cfg := config(options{python: python}, w, site, "", addr, admin, 2, 12)
	in, err := startInstance(context.Background(), wp, tmp, cfg, addr, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	st, err := in.status()
	if err != nil {
		t.Fatal(err)
	}
	template := st.templatePID()
	if template == 0 {
		t.Fatalf("no ready template (it forks every worker, or the check below means nothing): %+v", st)
	}

	// Load from 4 clients until 50 workers were recycled (bounded in requests and time).
	var (
		mu         sync.Mutex
		servedBy   = map[int]map[int]bool{} // backend pid -> the worker pids it answered for
		failures   []string
		requests   int
		violations []string
	)
	recycled := func() int { return len(in.Logged("worker stopped", time.Time{}, time.Now().Add(time.Hour))) }
	deadline := time.Now().Add(90 * time.Second)
	cl := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20000 {
				if recycled() >= 50 || time.Now().After(deadline) {
					return
				}
				resp, err := cl.Get("http://" + addr + "/db/")
				var got struct{ PID, Backend int }
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
					} else {
						err = json.Unmarshal(body, &got)
					}
				}
				mu.Lock()
				requests++
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					if servedBy[got.Backend] == nil {
						servedBy[got.Backend] = map[int]bool{}
					}
					servedBy[got.Backend][got.PID] = true
				}
				mu.Unlock()
			}
		})
	}
	// Meanwhile: every session still in pg_stat_activity was opened by a live worker after its
	// fork, never by the template.
	checks := 0
	for recycled() < 50 && time.Now().Before(deadline) {
		st, err := in.status()
		if err != nil {
			t.Fatal(err)
		}
		started := map[int]time.Time{}
		for _, w := range st.Workers {
			started[w.PID] = w.StartedAt
		}
		for _, b := range pg.backends(t) {
			switch at, live := started[b.opener]; {
			case b.opener == template:
				violations = append(violations, fmt.Sprintf("backend %d is the template's session (pid %d), still open after its forks", b.pid, template))
			case live && b.started.Before(at):
				violations = append(violations, fmt.Sprintf("backend %d of worker pid %d started at %s, before the worker (%s)", b.pid, b.opener, b.started, at))
			}
		}
		checks++
		time.Sleep(200 * time.Millisecond) // polls pg_stat_activity; no event says it changed
	}
	wg.Wait()
	if n := recycled(); n < 50 {
		t.Fatalf("only %d recycles in 90 s (%d requests)", n, requests)
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed through 50 recycles: %q", len(failures), requests, failures[:min(5, len(failures))])
	}
	for backendPID, pids := range servedBy {
		if len(pids) > 1 {
			violations = append(violations, fmt.Sprintf("backend %d answered for processes %v", backendPID, keys(pids)))
		}
	}
	if len(violations) > 0 {
		t.Fatalf("sessions crossed a fork (%d checks of pg_stat_activity):\n%s", checks, strings.Join(violations, "\n"))
	}
	if len(servedBy) < 50 {
		t.Errorf("only %d distinct sessions served %d requests across 50 recycles", len(servedBy), requests)
	}
	t.Logf("%d requests, %d recycles, %d sessions, %d checks of pg_stat_activity", requests, recycled(), len(servedBy), checks)
}

func keys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}
