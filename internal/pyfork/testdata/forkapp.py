"""A WSGI app for warmpool's fork tests (standard library only).

GET /        says which process served it and whether this request met the process cold: the
             first request to reach the app's cold path in a process builds its state, as Django's
             first request does. A warm template's children find it built.
GET /random  random and secrets values, which must differ between forked children.
GET /imported  the modules this process imported since it was forked: a warm template's child
             should find everything it runs imported already.
GET /crash   exits the process at once (a crashing worker).
"""
import json
import os
import random
import secrets
import sys
import time

_warm_pid = None  # the process that built the warm state
_requests = 0
_modules_at_fork = set()
os.register_at_fork(after_in_child=lambda: _modules_at_fork.update(sys.modules))


def _cold_path():
    """Build the per-process state on first use, slowly (as lazy imports do)."""
    global _warm_pid
    if _warm_pid is None:
        time.sleep(float(os.environ.get("COLD_SECONDS", "0.2")))
        _warm_pid = os.getpid()
    return _warm_pid


def application(environ, start_response):
    global _requests
    _requests += 1
    path = environ.get("PATH_INFO", "/")
    if path == "/crash":
        os._exit(3)
    if path == "/imported":
        body = {"pid": os.getpid(), "imported": (sorted(set(sys.modules) - _modules_at_fork) if _modules_at_fork else None)}
    elif path == "/random":
        body = {"pid": os.getpid(), "random": random.random(), "token": secrets.token_hex(8)}
    else:
        warmed_in = _cold_path()
        body = {
            "pid": os.getpid(),
            "warmed_in": warmed_in,
            "worker_id": os.environ.get("WARMPOOL_WORKER_ID", ""),
            "requests": _requests,
            "remote_addr": environ.get("REMOTE_ADDR", ""),
        }
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
