"""The seed scenario's WSGI app (standard library only).

Its middleware does a cold, import-like step on the first request of each process: about 300 ms
of CPU under a process-wide lock, so every other thread of that process waits too. The state it
builds is per process (like connection pools or caches that cannot survive a fork), so a warm
master does not warm the children it forks. Every request then does about 1 ms of CPU.
"""
import os
import threading
import time

COLD_SECONDS = float(os.environ.get("COLD_SECONDS", "0.3"))
WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "0.001"))

_lock = threading.Lock()
_warm_pid = None


def _burn(seconds):
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for i in range(200):
            x += i * i
    return x


def _ensure_warm():
    """Run the cold step once per process; True when this request met it."""
    global _warm_pid
    if _warm_pid == os.getpid():
        return False
    with _lock:
        if _warm_pid != os.getpid():
            _burn(COLD_SECONDS)
            _warm_pid = os.getpid()
    return True


def _app(environ, start_response):
    _burn(WORK_SECONDS)
    body = b"hello from the seed app\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    cold = _ensure_warm()

    def start(status, headers, exc_info=None):
        headers = headers + [("X-Cold", "1" if cold else "0"), ("X-Worker-Pid", str(os.getpid()))]
        return start_response(status, headers, exc_info)

    return _app(environ, start)


def warm_up():
    """The in-process warm-up the peers' best practice runs before a worker takes traffic."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "HTTP_HOST": "localhost"}
    application(environ, lambda status, headers, exc_info=None: None)
