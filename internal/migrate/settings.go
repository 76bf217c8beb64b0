package migrate

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Settings are another server's settings in warmpool's terms, with what could not be mapped.
type Settings struct {
	Server string // "gunicorn" or "uWSGI"
	Source string // the file read

	Listen     string // host:port
	Workers    int
	Threads    int
	App        string // the Python app, "module:callable" ("" when unknown)
	Interface  string // "wsgi" or "asgi"
	Preload    bool   // the app was loaded once before the workers were forked
	LazyApps   bool   // the app was loaded in each worker (uWSGI lazy-apps)
	Dir        string
	Env        map[string]string
	Executable string // the Python of the app's environment, when the config names it

	MaxRequests     int
	Jitter          int
	MaxLifetime     time.Duration
	MaxRSSMiB       int
	Timeout         time.Duration // the other server kills a worker silent this long
	TimeoutKey      string        // the setting that said so ("timeout", "harakiri")
	GracefulTimeout time.Duration
	AccessLog       string // "stdout", a path, or ""
	TrustedProxies  []string
	MaxHeaderBytes  int

	// Mapped notes what each mapped setting became; Unmapped what was left out, and why.
	Mapped   []Note
	Unmapped []Note
}

// Note is one setting of the other server's and what became of it.
type Note struct {
	Key, Value, Why string
}

func (s *Settings) mapped(key string, value any, why string) {
	s.Mapped = append(s.Mapped, Note{key, fmt.Sprint(value), why})
}

func (s *Settings) unmapped(key string, value any, why string) {
	s.Unmapped = append(s.Unmapped, Note{key, fmt.Sprint(value), why})
}

func (s *Settings) sortNotes() {
	for _, notes := range [][]Note{s.Mapped, s.Unmapped} {
		sort.SliceStable(notes, func(i, j int) bool { return notes[i].Key < notes[j].Key })
	}
}

// listenAddr turns a bind address into warmpool's listen ("host:port"); ok false for what
// warmpool cannot listen on (a unix socket, a file descriptor).
func listenAddr(bind string) (string, bool) {
	bind = strings.TrimSpace(bind)
	switch {
	case strings.HasPrefix(bind, "unix:"), strings.HasPrefix(bind, "fd://"), strings.HasPrefix(bind, "/"), strings.HasPrefix(bind, "@"):
		return "", false
	case strings.HasPrefix(bind, ":"):
		return "0.0.0.0" + bind, true
	case !strings.Contains(bind, ":"):
		return bind + ":8000", true // gunicorn's default port
	}
	return bind, true
}

// common is a setting gunicorn and uWSGI both have, under their own names: one place says what
// it becomes in warmpool.
type common int

const (
	commonWorkers common = iota + 1
	commonThreads
	commonMaxRequests
	commonJitter
	commonTimeout
	commonGraceful
	commonDir
)

// applyCommon sets what the common setting c (the other server's key and value) becomes.
func (s *Settings) applyCommon(c common, key string, v any) {
	switch c {
	case commonWorkers:
		s.Workers = intOf(v, 1)
		s.mapped(key, v, "worker.count")
	case commonThreads:
		s.Threads = intOf(v, 1)
		s.mapped(key, v, "worker.concurrency: each forked worker serves that many requests at once")
	case commonMaxRequests:
		s.MaxRequests = intOf(v, 0)
		s.mapped(key, v, "worker.max_requests")
	case commonJitter:
		s.Jitter = intOf(v, 0)
		s.mapped(key, v, "worker.max_requests_jitter")
	case commonTimeout:
		s.Timeout, s.TimeoutKey = seconds(v), key
		s.mapped(key, v, "proxy.request_timeout (see there)")
	case commonGraceful:
		s.GracefulTimeout = seconds(v)
		s.mapped(key, v, "worker.graceful_timeout")
	case commonDir:
		s.Dir = fmt.Sprint(v)
		s.mapped(key, v, "worker.dir")
	}
}
