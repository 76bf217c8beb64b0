"""warmpool's Python worker helper: serves a WSGI or ASGI app for warmpool.

warmpool embeds this file, writes it to its private runtime directory and runs it with the
interpreter of the app's environment ([worker.python] executable). It uses the standard library,
plus the server that serves the app in a worker: waitress (WSGI) or uvicorn (ASGI).

Two modes:

  template  imports the app, serves warmpool's warm-up plan single-threaded on fd 3, then, told
            to prepare over the control socket (fd 4), closes what must not cross a fork and
            forks a warm child for every worker warmpool asks for.
  serve     a fresh worker process: imports the app and serves it on fd 3. warmpool starts one
            when no template can fork (the fallback), and for `warmpool diagnose`.

Fork safety, as this file handles it:
- Threads: only the forking thread survives a fork, and locks other threads held stay locked in
  the child. The template refuses to fork while any other thread runs (it names each one), and
  warmpool then starts fresh processes instead, loudly.
- Sockets and database connections: a connection shared by two processes mixes their traffic.
  Django's connections are closed before the fork; the app's pre_fork closes the rest. Closing a
  shared connection after the fork would end the template's session too, so it is never done.
- The warm-up listener and the control socket are closed in every child.
- Random state: `random` reseeds itself in a forked child; `secrets` reads the OS. NumPy's global
  generator does not, so a child reseeds it when NumPy is loaded.
- The garbage collector: gc.freeze() after gc.collect() moves the warm objects out of its reach,
  so collections in a child do not write to (and unshare) the template's pages.

The control protocol (fd 4) is the table below, OPS and REPLIES, kept with the same version as
warmpool's internal/pyfork/protocol.go: one JSON object per SOCK_SEQPACKET packet, its kind in
"type", file descriptors with it (SCM_RIGHTS). warmpool checks the version in hello.
"""

import argparse
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback

LISTEN_FD = 3
CONTROL_FD = 4
# The exit status (EX_CONFIG) that tells warmpool retrying cannot help: keep it equal to
# ExitUnfixable in protocol.go.
EXIT_UNFIXABLE = 78
MAX_MESSAGE = 1 << 20


def load(spec):
    """Import "module:attribute" (the attribute may be dotted) and return it."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"warmpool: {spec!r} is not of the form module:callable")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def describe(fn):
    """A callable's name as a person looks it up: module.qualname."""
    if fn is None:
        return ""
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{name}"


PROTOCOL_VERSION = 1

# What warmpool sends, with the fields each carries.
OPS = {
    "prepare": (),
    "fork": ("id", "env", "warmpool_pid"),  # with the listener, stdout and stderr
    "release": ("pid",),
    "ping": ("seq",),
}

# What the template sends.
REPLIES = {
    "hello": ("version", "pid"),  # first, before the app's import
    "imported": (),
    "prepared": ("ok", "threads", "closed"),
    "forked": ("pid",),
    "failed": ("error",),  # an op it cannot carry out now
    "pong": ("seq",),
}


class ProtocolError(Exception):
    """A message that is not in the table."""


def send(ctl, kind, fds=(), **fields):
    """Send a REPLIES message of this kind, with exactly its fields."""
    expected = REPLIES.get(kind)
    if expected is None or set(fields) != set(expected):
        raise ProtocolError(f"{kind!r} with fields {sorted(fields)} is not in the protocol")
    data = json.dumps({"type": kind, **fields}).encode()
    if fds:
        socket.send_fds(ctl, [data], list(fds))
    else:
        ctl.send(data)


def receive(ctl):
    """The next op from warmpool and its descriptors; (None, []) once warmpool has gone.
    An op that is not in OPS, or lacks a field, raises ProtocolError (its descriptors closed)."""
    data, fds, _flags, _addr = socket.recv_fds(ctl, MAX_MESSAGE, 8)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    message = json.loads(data)
    kind = message.get("type") if isinstance(message, dict) else None
    expected = OPS.get(kind)
    if expected is None or any(field not in message for field in expected):
        for fd in fds:
            os.close(fd)
        raise ProtocolError(f"unexpected control message {message!r}")
    return message, fds


# --- serving ---------------------------------------------------------------------------------


def wsgi_options(threads):
    """waitress's settings for a worker."""
    return dict(
        threads=threads,
        # warmpool is the only peer, and it sets X-Forwarded-For and -Proto itself (it removes
        # a client's own unless they came through proxy.trusted_proxies).
        trusted_proxy="*",
        trusted_proxy_count=1,
        trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"},
        clear_untrusted_proxy_headers=False,
        asyncore_use_poll=True,  # no select() limit of 1024 descriptors
        connection_limit=max(100, threads * 4),
        ident=None,
    )


def serve_wsgi(app, sock, threads):
    """Serve a WSGI app with waitress until SIGTERM; in-flight requests finish first."""
    from waitress.server import create_server

    server = create_server(app, sockets=[sock], **wsgi_options(threads))

    def stop(_signum, _frame):
        raise SystemExit(0)  # waitress's run() then waits for the requests in flight

    signal.signal(signal.SIGTERM, stop)
    server.run()


def serve_asgi(app, sock, _threads):
    """Serve an ASGI app with uvicorn's event loop until SIGTERM (uvicorn drains gracefully)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        lifespan="auto",
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="*",
    )
    uvicorn.Server(config).run(sockets=[sock])


SERVERS = {"wsgi": serve_wsgi, "asgi": serve_asgi}


def import_server(interface):
    """Import the server before the app, so a template's children share it warm; and quiet
    waitress's queue-depth warning: warmpool queues requests itself and reports that."""
    server = "waitress" if interface == "wsgi" else "uvicorn"
    try:
        if interface == "wsgi":
            import logging

            import waitress.server  # noqa: F401

            logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        else:
            import uvicorn  # noqa: F401
    except ImportError as e:
        print(
            f"warmpool: {sys.executable} cannot import {server}, which serves a {interface.upper()} app "
            f"({e}): install it in the app's environment (pip install {server}; Debian: python3-{server}), "
            "or point worker.python.executable at the environment that has it",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_UNFIXABLE) from None


def warm_server_start(interface, threads, sock):
    """Run in the template what a child's server does before it serves, where it would load
    code or data anew in every child: waitress resolves its default address as it reads its
    settings, and the first getaddrinfo() of a process imports the idna codec."""
    if interface == "wsgi":
        from waitress.adjustments import Adjustments

        Adjustments(sockets=[sock], **wsgi_options(threads))


def run_hook(spec):
    """Call the hook named "module:callable", if one is named."""
    if spec:
        load(spec)()


# --- the template's warm-up ------------------------------------------------------------------


def warm_wsgi(app, listener, ctl):
    """Serve the warm-up plan in this (the main) thread with the standard library's WSGI server,
    one request at a time, until a control message arrives. Running the app in the main thread
    keeps its thread-local state (Django's connections) where prepare can close it."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    class Handler(WSGIRequestHandler):
        def log_message(self, *args):  # warmpool logs the warm-up itself
            pass

        def address_string(self):
            return "warmpool"

    class Server(WSGIServer):
        def finish_request(self, request, client_address):
            if not isinstance(client_address, tuple):  # a unix socket's peer has no address
                client_address = ("127.0.0.1", 0)
            super().finish_request(request, client_address)

    server = Server(("localhost", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    server.server_name, server.server_port = "localhost", 0
    server.setup_environ()
    server.set_app(app)
    while True:
        readable, _, _ = select.select([listener, ctl], [], [])
        if ctl in readable:
            return
        server.handle_request()


def warm_asgi(app, listener, ctl):
    """Serve the warm-up plan with uvicorn in this thread's event loop until a control message
    arrives; the loop and its executor are closed when it returns."""
    import asyncio

    import uvicorn

    config = uvicorn.Config(app, lifespan="auto", log_level="warning", access_log=False)
    # As Server.run() does in each child: the event loop the children run (uvloop when it is
    # installed) is the one the template warms with, and is imported here, not in every child.
    config.setup_event_loop()
    server = uvicorn.Server(config)

    async def main():
        loop = asyncio.get_running_loop()

        def stop():
            loop.remove_reader(ctl.fileno())
            server.should_exit = True

        loop.add_reader(ctl.fileno(), stop)
        await server.serve(sockets=[listener])

    asyncio.run(main())


WARMERS = {"wsgi": warm_wsgi, "asgi": warm_asgi}


# --- the template's preparation for forking --------------------------------------------------


def close_before_fork():
    """Close what must not be shared by processes; returns what was closed, for the log."""
    closed = []
    django_db = sys.modules.get("django.db")
    if django_db is not None:
        django_db.connections.close_all()
        closed.append("Django database connections")
    asgiref_sync = sys.modules.get("asgiref.sync")
    executor = getattr(getattr(asgiref_sync, "SyncToAsync", None), "single_thread_executor", None)
    if executor is not None:
        # asgiref runs thread-sensitive sync code (Django's ORM under ASGI) on one long-lived
        # thread; it is stopped here and made anew in each child.
        executor.shutdown(wait=True)
        closed.append("asgiref's thread-sensitive executor")
    return closed


def reopen_after_fork():
    asgiref_sync = sys.modules.get("asgiref.sync")
    if asgiref_sync is not None and hasattr(asgiref_sync, "SyncToAsync"):
        from concurrent.futures import ThreadPoolExecutor

        asgiref_sync.SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()  # NumPy's global generator does not reseed itself after a fork


def extra_threads(grace=1.0):
    """Every thread but this one: a fork would copy none of them, and keep the locks they hold.

    A thread that was just joined (an executor shut down, an event loop's helpers) may still be
    listed by the OS for a moment after Python is done with it, so threads that Python does not
    know are counted again for up to `grace` seconds before they are reported."""
    deadline = time.monotonic() + grace
    while True:
        found = []
        for t in threading.enumerate():
            if t is threading.current_thread():
                continue
            target = getattr(t, "_target", None)
            found.append({
                "name": t.name,
                "target": describe(target) if target is not None else describe(type(t).run),
            })
        try:
            tasks = os.listdir("/proc/self/task")
        except OSError:
            tasks = []
        unknown = len(tasks) - 1 - len(found)
        if unknown <= 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    if unknown > 0:
        names = set()
        for tid in tasks:
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    names.add(f.read().strip())
            except OSError:
                pass
        found.append({
            "name": f"{unknown} thread(s) that the threading module does not know (named {', '.join(sorted(names))})",
            "target": "started by a C extension, such as an OpenMP or BLAS pool (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS)",
        })
    return found


def prepare(args):
    """Close what must not cross a fork and check the threads: the prepared reply's fields."""
    closed = close_before_fork()
    run_hook(args.pre_fork)
    threads = extra_threads()
    if threads:
        return {"ok": False, "threads": threads, "closed": closed}
    gc.collect()
    gc.freeze()
    return {"ok": True, "threads": [], "closed": closed}


# --- forking ---------------------------------------------------------------------------------


def fork_child(args, app, ctl, request, fds, others):
    """Fork a worker. The worker is a grandchild: its parent exits at once, so it is adopted by
    warmpool (a child subreaper), which then reaps and supervises it. The worker waits for
    warmpool's release, sent once warmpool has registered it, before it does anything."""
    listen_fd, out_fd, err_fd = fds
    pid_r, pid_w = os.pipe()
    release_r, release_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:
        code = 1
        try:
            os.close(pid_r)
            os.close(release_w)
            worker = os.fork()
            if worker == 0:
                os.close(pid_w)
                child_main(args, app, ctl, request, listen_fd, out_fd, err_fd, release_r, others)
            os.write(pid_w, str(worker).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(pid_w)
    os.close(release_r)
    for fd in fds:
        os.close(fd)
    with os.fdopen(pid_r, "rb") as f:
        reported = f.read()
    os.waitpid(middle, 0)  # once it is reaped, the worker's parent is warmpool
    if not reported:
        os.close(release_w)
        return "the fork failed in the intermediate process", None
    return int(reported), release_w


def child_main(args, app, ctl, request, listen_fd, out_fd, err_fd, release_r, others):
    code = 0
    try:
        os.setpgid(0, 0)  # a group of its own: warmpool's signals reach the worker's children
        ctl.close()
        for fd in others:  # the release pipes of workers forked before this one
            os.close(fd)
        if not os.read(release_r, 1):
            os._exit(1)  # the template ended before warmpool took this worker
        os.close(release_r)
        set_parent_death_signal()
        if os.getppid() != request["warmpool_pid"]:
            os._exit(1)  # warmpool is gone already
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ.update(request["env"])
        reopen_after_fork()
        run_hook(args.post_fork)
        SERVERS[args.interface](app, socket.socket(fileno=listen_fd), args.threads)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


_libc = None


def load_libc():
    """Load libc through ctypes in the template, so that no child pays for the import."""
    global _libc
    try:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    except (OSError, ImportError):
        _libc = None


def set_parent_death_signal():
    """SIGKILL when warmpool dies (the worker's parent now), as for the workers warmpool execs."""
    PR_SET_PDEATHSIG = 1
    try:
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except AttributeError:
        pass  # warmpool's keeper still ends the worker with warmpool


def template_main(args):
    ctl = socket.socket(fileno=CONTROL_FD)
    listener = socket.socket(fileno=LISTEN_FD)
    send(ctl, "hello", version=PROTOCOL_VERSION, pid=os.getpid())
    import_server(args.interface)
    warm_server_start(args.interface, args.threads, listener)
    load_libc()
    app = load(args.app)
    send(ctl, "imported")
    WARMERS[args.interface](app, listener, ctl)
    message, fds = receive(ctl)
    if message is None:
        return
    if message["type"] != "prepare":
        raise SystemExit(f"warmpool: expected prepare, got {message!r}")
    try:
        listener.close()
    except OSError:
        pass
    result = prepare(args)
    send(ctl, "prepared", **result)
    serve_control(args, app, ctl, result["ok"])


def serve_control(args, app, ctl, can_fork):
    """Answer warmpool's ops until it closes the control socket."""
    pending = {}  # pid -> the pipe that releases it
    while True:
        message, fds = receive(ctl)
        if message is None:
            break
        op = message["type"]
        if op == "fork" and can_fork and len(fds) == 3:
            reply, release = fork_child(args, app, ctl, message, fds, list(pending.values()))
            if release is None:
                send(ctl, "failed", error=reply)
            else:
                pending[reply] = release
                send(ctl, "forked", pid=reply)
        elif op == "release":
            release = pending.pop(message["pid"], None)
            if release is not None:
                os.write(release, b"1")
                os.close(release)
        elif op == "ping":
            send(ctl, "pong", seq=message["seq"])
        else:
            for fd in fds:
                os.close(fd)
            send(ctl, "failed", error=f"cannot {op!r} now")
    for release in pending.values():
        os.close(release)


def serve_main(args):
    sock = socket.socket(fileno=LISTEN_FD)
    import_server(args.interface)
    app = load(args.app)
    reopen_after_fork()
    run_hook(args.post_fork)
    SERVERS[args.interface](app, sock, args.threads)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="warmpool-python-helper")
    parser.add_argument("mode", choices=["template", "serve"])
    parser.add_argument("--app", required=True)
    parser.add_argument("--interface", choices=sorted(SERVERS), default="wsgi")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pre-fork", default="")
    parser.add_argument("--post-fork", default="")
    args = parser.parse_args(argv)
    # The app is imported from the worker's directory, as `python -m` or gunicorn would.
    sys.path.insert(0, os.getcwd())
    if args.mode == "template":
        template_main(args)
    else:
        serve_main(args)


if __name__ == "__main__":
    main()
