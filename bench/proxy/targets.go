package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// target is one way of reaching the two workers.
type target struct {
	name string
	key  string // the name -targets takes
	// unixWorkers: the target fronts the unix-socket pair of workers, not the TCP pair.
	unixWorkers bool
	// ownWorkers: the target starts its own workers (warmpool), as its children.
	ownWorkers bool
	// start launches the proxy (nil for direct) and returns its address.
	start func(h *harness) (addr string, p *proc, err error)
	// needs names the binary the target requires; missing means the target is skipped.
	needs string
	// keepAliveOnly skips the target with a new connection per request (the event-loop relay
	// closes a pair on the worker's close without waiting for the client's).
	keepAliveOnly bool
}

// The TCP targets first; then the same two proxies to workers on unix sockets, warmpool's own
// default transport (nginx can use it too).
var targets = []target{
	{name: "direct", key: "direct", start: startDirect},
	{name: "go relay (floor)", key: "gorelay", start: startRelay},
	{name: "event-loop relay (floor)", key: "eprelay", start: startLoopRelay, keepAliveOnly: true},
	{name: "warmpool", key: "warmpool", ownWorkers: true, start: func(h *harness) (string, *proc, error) { return startWarmpool(h, h.warmpoolBin, "--port", "{port}") }},
	{name: "nginx", key: "nginx", start: func(h *harness) (string, *proc, error) { return startNginx(h, h.workers) }, needs: "nginx"},
	{name: "haproxy", key: "haproxy", start: startHAProxy, needs: "haproxy"},
	{name: "warmpool, unix sockets", key: "warmpool-unix", ownWorkers: true, unixWorkers: true, start: func(h *harness) (string, *proc, error) {
		return startWarmpool(h, h.warmpoolBin, "--socket", "{socket}")
	}},
	{name: "nginx, unix sockets", key: "nginx-unix", unixWorkers: true, start: func(h *harness) (string, *proc, error) {
		upstreams := make([]string, len(h.sockets))
		for i, s := range h.sockets {
			upstreams[i] = "unix:" + s
		}
		return startNginx(h, upstreams)
	}, needs: "nginx"},
}

func startDirect(h *harness) (string, *proc, error) { return h.workers[0], nil, nil }

func startRelay(h *harness) (string, *proc, error) {
	addr := h.freeAddr()
	p, err := h.spawn("gorelay", append([]string{h.relayBin, "--listen", addr}, h.workers...), "gorelay listening")
	return addr, p, err
}

func startLoopRelay(h *harness) (string, *proc, error) {
	addr := h.freeAddr()
	p, err := h.spawn("eprelay", append([]string{h.loopRelayBin, "--listen", addr}, h.workers...), "eprelay listening")
	return addr, p, err
}

// baselineTarget is warmpool built from another commit (-baseline), fronting the TCP workers:
// an A/B of two builds measured in the same rounds.
func baselineTarget(bin string) target {
	return target{name: "warmpool baseline", key: "baseline", ownWorkers: true,
		start: func(h *harness) (string, *proc, error) { return startWarmpool(h, bin, "--port", "{port}") }}
}

func startWarmpool(h *harness, bin, flag, placeholder string) (string, *proc, error) {
	addr, admin := h.freeAddr(), h.freeAddr()
	cfg := fmt.Sprintf(`listen = %q
admin_listen = %q
[worker]
command = [%q, %q, %q]
count = 2
concurrency = 256
[proxy]
queue_size = 4096
[[warmup.request]]
path = "/"
`, addr, admin, h.upstreamBin, flag, placeholder)
	path := filepath.Join(h.dir, filepath.Base(bin)+"-"+strings.TrimPrefix(flag, "--")+".toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", nil, err
	}
	p, err := h.spawn("warmpool", []string{bin, "run", "--config", path}, "pool ready")
	return addr, p, err
}

func startNginx(h *harness, upstreams []string) (string, *proc, error) {
	addr := h.freeAddr()
	dir := filepath.Join(h.dir, "nginx-"+strings.ReplaceAll(addr, ":", "-"))
	os.MkdirAll(dir, 0o755)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // nginx's workers would run as nobody and could not reach the harness's sockets
	}
	cfg := fmt.Sprintf(`%[5]s
worker_processes auto;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream workers {
    least_conn;
    server %[2]s;
    server %[3]s;
    keepalive 128;
  }
  server {
    listen %[4]s;
    location / {
      proxy_pass http://workers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`, dir, upstreams[0], upstreams[1], addr, user)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", nil, err
	}
	p, err := h.spawn("nginx", []string{"nginx", "-p", dir, "-c", path}, "")
	if err == nil {
		err = h.waitListening("tcp", addr)
	}
	return addr, p, err
}

func startHAProxy(h *harness) (string, *proc, error) {
	addr := h.freeAddr()
	cfg := fmt.Sprintf(`global
  nbthread 2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option forwardfor
frontend front
  bind %s
  default_backend workers
backend workers
  balance leastconn
  http-reuse always
  server w1 %s
  server w2 %s
`, addr, h.workers[0], h.workers[1])
	path := filepath.Join(h.dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", nil, err
	}
	p, err := h.spawn("haproxy", []string{"haproxy", "-db", "-f", path}, "")
	if err == nil {
		err = h.waitListening("tcp", addr)
	}
	return addr, p, err
}
