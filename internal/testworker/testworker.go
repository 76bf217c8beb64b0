package testworker

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"warmpool/internal/worker"
)

// Environment variables that choose the worker's behaviour.
const (
	EnvActive      = "WP_TESTWORKER"            // "1": this process is a test worker
	EnvCold        = "TW_COLD"                  // duration of the cold start of the first request
	EnvAllowedHost = "TW_ALLOWED_HOST"          // other Host headers get 400, like Django's ALLOWED_HOSTS
	EnvNotifyDelay = "TW_NOTIFY_DELAY"          // send READY=1 this long after listening
	EnvExitAtStart = "TW_EXIT_AT_START"         // exit at once with this status
	EnvBrokenFile  = "TW_BROKEN_IF_FILE_EXISTS" // a worker started while this file exists answers 500
	EnvListenDelay = "TW_LISTEN_DELAY"          // wait this long before listening
	EnvPathCold    = "TW_PATH_COLD"             // "/report=200ms": a lazy init on the first request to that path
	EnvIdleTimeout = "TW_IDLE_TIMEOUT"          // close idle keep-alive connections after this long, as gunicorn does
	EnvListenFD    = "TW_LISTEN_FD3"            // "1": serve on the socket warmpool bound and passed as fd 3
	EnvStopDelay   = "TW_STOP_DELAY"            // on SIGTERM, print "stopping on SIGTERM" and wait this long before stopping
)

// Response headers of the test worker.
const (
	HeaderID            = "X-Worker-Id"
	HeaderPID           = "X-Worker-Pid"
	HeaderGeneration    = "X-Worker-Generation"
	HeaderWarmupsSeen   = "X-Warmups-Seen"  // warm-up requests received before this request
	HeaderRequestIndex  = "X-Request-Index" // 1-based index among client requests
	HeaderCold          = "X-Cold"
	HeaderNotifiedEarly = "X-Notified-Before-Warmup"
)

// Active reports whether this process was started as a test worker.
func Active() bool { return os.Getenv(EnvActive) == "1" }

type server struct {
	id, pid, gen  string
	cold          time.Duration
	allowedHost   string
	broken        bool
	initLock      sync.Mutex
	warm          atomic.Bool
	warmups       atomic.Int64
	requests      atomic.Int64
	notified      atomic.Bool
	notifiedFirst atomic.Int32 // 0 unknown, 1 notified before first warm-up, 2 not
	pathCold      map[string]time.Duration
	pathWarm      sync.Map
	trigger       chan chan struct{} // /trigger asks a connection /extra left idle to send its bytes
}

// Main runs the test worker until SIGTERM and exits the process.
func Main() {
	if code := os.Getenv(EnvExitAtStart); code != "" {
		n, _ := strconv.Atoi(code)
		fmt.Fprintln(os.Stderr, "test worker exiting at start as told")
		os.Exit(n)
	}
	s := &server{
		id: os.Getenv(worker.EnvWorkerID), pid: strconv.Itoa(os.Getpid()), gen: os.Getenv(worker.EnvGeneration),
		allowedHost: os.Getenv(EnvAllowedHost),
	}
	s.trigger = make(chan chan struct{})
	s.cold, _ = time.ParseDuration(os.Getenv(EnvCold))
	s.pathCold = map[string]time.Duration{}
	if v := os.Getenv(EnvPathCold); v != "" {
		for _, item := range strings.Split(v, ",") {
			path, d, _ := strings.Cut(item, "=")
			s.pathCold[path], _ = time.ParseDuration(d)
		}
	}
	if f := os.Getenv(EnvBrokenFile); f != "" {
		if _, err := os.Stat(f); err == nil {
			s.broken = true
		}
	}
	if d, err := time.ParseDuration(os.Getenv(EnvListenDelay)); err == nil {
		time.Sleep(d) // simulates a slow import at startup
	}
	var ln net.Listener
	var err error
	if os.Getenv(EnvListenFD) == "1" {
		ln, err = net.FileListener(os.NewFile(worker.ListenFD, "listener"))
	} else {
		ln, err = worker.ListenFromEnv()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "test worker:", err)
		os.Exit(1)
	}
	fmt.Printf("test worker %s listening (pid %s)\n", s.id, s.pid)
	if d, err := time.ParseDuration(os.Getenv(EnvNotifyDelay)); err == nil {
		go func() {
			time.Sleep(d)
			s.notified.Store(true)
			notify("READY=1")
		}()
	}
	srv := &http.Server{Handler: s}
	if d, err := time.ParseDuration(os.Getenv(EnvIdleTimeout)); err == nil {
		srv.IdleTimeout = d
		srv.ConnState = func(_ net.Conn, st http.ConnState) {
			switch st { // tests wait on these lines
			case http.StateNew:
				fmt.Println("test worker connection opened")
			case http.StateClosed:
				fmt.Println("test worker connection closed")
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		if d, err := time.ParseDuration(os.Getenv(EnvStopDelay)); err == nil {
			fmt.Println("test worker stopping on SIGTERM")
			time.Sleep(d)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	_ = srv.Serve(ln)
	<-ctx.Done()
	os.Exit(0)
}

func notify(state string) {
	path := os.Getenv(worker.EnvNotify)
	if path == "" {
		return
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	isWarmup := r.Header.Get(worker.WarmupHeader) != ""
	h := w.Header()
	h.Set(HeaderID, s.id)
	h.Set(HeaderPID, s.pid)
	h.Set(HeaderGeneration, s.gen)
	if isWarmup {
		if s.notifiedFirst.Load() == 0 {
			v := int32(2)
			if s.notified.Load() {
				v = 1
			}
			s.notifiedFirst.CompareAndSwap(0, v)
		}
	} else {
		h.Set(HeaderWarmupsSeen, strconv.FormatInt(s.warmups.Load(), 10))
		h.Set(HeaderRequestIndex, strconv.FormatInt(s.requests.Add(1), 10))
		h.Set(HeaderNotifiedEarly, strconv.Itoa(int(s.notifiedFirst.Load())))
	}
	if s.allowedHost != "" && hostOnly(r.Host) != s.allowedHost {
		msg := "Invalid HTTP_HOST header: '" + r.Host + "'. You may need to add it to ALLOWED_HOSTS."
		fmt.Fprintln(os.Stderr, "Bad Request: "+msg) // Django logs it too
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	if s.broken {
		http.Error(w, "broken build: ImportError: cannot import name 'views'", http.StatusInternalServerError)
		return
	}
	cold := s.ensureWarm()
	if d, ok := s.pathCold[r.URL.Path]; ok {
		if _, done := s.pathWarm.Load(r.URL.Path); !done {
			s.initLock.Lock() // like a lazy import: under the process-wide lock
			if _, done := s.pathWarm.Load(r.URL.Path); !done {
				time.Sleep(d)
				s.pathWarm.Store(r.URL.Path, true)
				cold = true
			}
			s.initLock.Unlock()
		}
	}
	h.Set(HeaderCold, strconv.FormatBool(cold))
	if isWarmup {
		defer s.warmups.Add(1)
	}
	if !isWarmup && (r.URL.Path == "/sleep" || r.URL.Path == "/hang") {
		fmt.Println("test worker request " + r.URL.Path) // tests wait on this line in the log
	}
	switch r.URL.Path {
	case "/sleep":
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
		}
		fmt.Fprintln(w, "slept", ms)
	case "/crash":
		fmt.Fprintln(os.Stderr, "test worker crashing as told")
		os.Exit(3)
	case "/hang":
		select {} // stuck for good: only SIGKILL ends it
	case "/echo":
		body, _ := io.ReadAll(r.Body)
		h.Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"host": r.Host, "header": r.Header, "proto": r.Proto, "uri": r.RequestURI, "method": r.Method,
			"body": string(body), "body_sha256": fmt.Sprintf("%x", sha256.Sum256(body)), "content_length": r.ContentLength, "transfer_encoding": r.TransferEncoding, "trailer": r.Trailer,
			"env": map[string]string{
				"WARMPOOL_WORKER_ID": os.Getenv(worker.EnvWorkerID), "WARMPOOL_SOCKET": os.Getenv(worker.EnvSocket),
				"PORT": os.Getenv(worker.EnvPort), "NOTIFY_SOCKET": os.Getenv(worker.EnvNotify),
				"WARMPOOL_GENERATION": os.Getenv(worker.EnvGeneration), "EXTRA": os.Getenv("EXTRA"),
				"WARMPOOL_ADMIN_TOKEN": os.Getenv("WARMPOOL_ADMIN_TOKEN"),
			},
		})
	case "/stream":
		h.Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "first")
		w.(http.Flusher).Flush()
		select { // the rest comes only once the client has read the first chunk and hung up
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
			fmt.Fprintln(w, "second")
		}
	case "/upload":
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, n)
	case "/close-silently":
		// Like uWSGI's http-socket: HTTP/1.1 without "Connection: close", then the socket closes.
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
		bw.Flush()
		conn.Close()
	case "/raw":
		// Writes the query's "b" as the raw response (framing tests), then closes the connection.
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		bw.WriteString(r.URL.Query().Get("b"))
		bw.Flush()
		conn.Close()
	case "/extra":
		// A sloppy worker: answers with status and, if given, a Content-Length of cl, then
		// body whatever the framing allows (after gap ms, in a write of its own), keeps the
		// connection open and serves more requests on it. late is sent on the connection once
		// it is idle, when /trigger is asked (on another connection).
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		q := r.URL.Query()
		brw.WriteString("HTTP/1.1 " + q.Get("status") + " X\r\n")
		if cl := q.Get("cl"); cl != "" {
			brw.WriteString("Content-Length: " + cl + "\r\n")
		}
		brw.WriteString("\r\n")
		if gap, _ := strconv.Atoi(q.Get("gap")); gap > 0 {
			brw.Flush()
			time.Sleep(time.Duration(gap) * time.Millisecond)
		}
		brw.WriteString(q.Get("body"))
		brw.Flush()
		if late := q.Get("late"); late != "" {
			go func() {
				select {
				case done := <-s.trigger:
					io.WriteString(conn, late)
					close(done)
				case <-time.After(10 * time.Second):
				}
			}()
		}
		go s.serveHijacked(conn, brw.Reader)
	case "/upgrade":
		// Switches to an echo protocol: every line sent comes back upper-cased, until EOF.
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(strings.ToUpper(line))
			brw.Flush()
		}
	case "/trigger":
		done := make(chan struct{})
		select {
		case s.trigger <- done:
			<-done
			fmt.Fprintln(w, "triggered")
		case <-time.After(10 * time.Second):
			http.Error(w, "no idle connection to trigger", http.StatusConflict)
		}
	case "/big":
		// "bytes" bytes of body with a Content-Length: more than the sockets between the
		// worker and a client that does not read can hold.
		n, _ := strconv.Atoi(r.URL.Query().Get("bytes"))
		h.Set("Content-Length", strconv.Itoa(n))
		chunk := make([]byte, 64<<10)
		for n > 0 {
			k, err := w.Write(chunk[:min(n, len(chunk))])
			if err != nil {
				return
			}
			n -= k
		}
	case "/empty":
		w.WriteHeader(http.StatusNoContent)
	case "/trailer":
		h.Set("Trailer", "X-Checksum")
		fmt.Fprintln(w, "body")
		h.Set("X-Checksum", "abc123")
	default:
		fmt.Fprintln(w, "ok")
	}
}

// serveHijacked goes on serving requests on a connection taken over by /extra.
func (s *server) serveHijacked(conn net.Conn, br *bufio.Reader) {
	defer conn.Close()
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		req.Body.Close()
		var out strings.Builder
		fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
		rec.Header().Del("Content-Length")
		rec.Header().Write(&out)
		fmt.Fprintf(&out, "Content-Length: %d\r\n\r\n", rec.Body.Len())
		if req.Method != http.MethodHead {
			out.Write(rec.Body.Bytes())
		}
		if _, err := io.WriteString(conn, out.String()); err != nil {
			return
		}
	}
}

func (s *server) ensureWarm() bool {
	if s.warm.Load() {
		return false
	}
	s.initLock.Lock()
	defer s.initLock.Unlock()
	if !s.warm.Load() {
		time.Sleep(s.cold)
		s.warm.Store(true)
	}
	return true
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
