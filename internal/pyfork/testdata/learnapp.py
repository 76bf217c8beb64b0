"""A WSGI app for warmpool's learning tests (standard library only): each route has lazy work
of its own that a warm-up plan covering only / leaves to every forked worker.

GET /         fast; the plan's route.
GET /report   imports lazy_report on first use (slow, as a data library's import is).
GET /render   builds a per-process cache on first use (slow, as a template's first render is).
GET /thready  imports lazy_thread, whose import starts a thread: never fit for a template.
GET /fails    imports lazy_fails, which imports only in a worker (it needs what post_fork opens).
GET /account  slow on first use too, but the tests request it with a cookie only.
Each answers which process served it and whether its lazy work was done before the fork.
"""
import importlib
import json
import os
import sys
import time

_at_fork = set()  # the modules imported when this process was forked
_render_cache = None
_account = None
connection = None  # opened by post_fork in each worker, as a database connection is


def post_fork():
    global connection
    connection = object()
os.register_at_fork(after_in_child=lambda: _at_fork.update(sys.modules) or _at_fork.add("forked"))


def _render():
    global _render_cache
    if _render_cache is None:
        time.sleep(float(os.environ.get("COLD_SECONDS", "0.3")))
        _render_cache = os.getpid()
    return _render_cache


def application(environ, start_response):
    global _account
    path = environ.get("PATH_INFO", "/")
    body = {"pid": os.getpid()}
    if path in ("/report", "/thready", "/fails"):
        name = {"/report": "lazy_report", "/thready": "lazy_thread", "/fails": "lazy_fails"}[path]
        body["imported_before_fork"] = name in _at_fork
        importlib.import_module(name)
    elif path == "/render":
        body["built_in"] = _render()
    elif path == "/account":
        if _account is None:
            time.sleep(float(os.environ.get("COLD_SECONDS", "0.3")))
            _account = os.getpid()
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
