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
  Django's connections are closed before the fork (under ASGI, on asgiref's thread, where they
  live); the app's pre_fork closes the rest. Closing a shared connection after the fork would
  end the template's session too, so it is never done. Before forking, the template lists the
  connected stream sockets it still holds and refuses to fork, naming each, unless the operator
  allowed its peer.
- An ASGI app's lifespan ("template" mode): its startup runs once, in the template, on an event
  loop that stays open and idle; a child never runs that loop, and lets go of its copies of the
  loop's descriptors without touching the epoll instance it shares with the template. The
  shutdown runs in the template as it retires.
- The warm-up listener and the control socket are closed in every child.
- Random state: `random` reseeds itself in a forked child; `secrets` reads the OS. NumPy's global
  generator does not, so a child reseeds it when NumPy is loaded.
- The garbage collector: gc.freeze() after gc.collect() moves the warm objects out of its reach,
  so collections in a child do not write to (and unshare) the template's pages.
- Learning (warmpool's warmup.learn): the modules warmpool learned are imported by the template
  after the app, one by one, each checked for threads it started and connections it opened (and
  dropped if it did, or failed); a child notes the modules it imports after its fork with a
  finder that finds nothing, made in the child, and sends their names in datagrams it never
  waits on.

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


PROTOCOL_VERSION = 3

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
    "imported": ("preloaded", "dropped"),  # learned modules imported {name: ms}; dropped [{module, reason, fatal}]
    "prepared": ("ok", "threads", "sockets", "closed"),
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
    """Serve an ASGI app with uvicorn's event loop until SIGTERM (uvicorn drains gracefully). In
    a child of a template that ran the app's lifespan, the lifespan is the inherited one: the
    child runs neither startup nor shutdown, and its requests see what startup made."""
    import uvicorn

    config = uvicorn.Config(
        app,
        lifespan="auto",
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="*",
    )
    if TEMPLATE_LIFESPAN is not None:
        forget_template_loop()
        config.load()
        config.lifespan_class = InheritedLifespan
    uvicorn.Server(config).run(sockets=[sock])


class InheritedLifespan:
    """The lifespan of a worker forked from a template that ran the app's lifespan startup.

    uvicorn's Server makes its lifespan as config.lifespan_class(config), awaits its startup()
    and shutdown(), and (uvicorn 0.21 and later) hands each request a copy of its `state`, the
    dict the app's lifespan filled: this class is that surface, with startup and shutdown done
    by the template. What startup set on the app's own objects (app.state, module globals) is in
    the forked memory already. helper_test.py pins the surface to the installed uvicorn."""

    state = {}  # the template's lifespan state, set before the first fork

    def __init__(self, config):
        self.config = config
        self.should_exit = False
        self.state = InheritedLifespan.state

    async def startup(self):
        pass

    async def shutdown(self):
        pass


# (loop, lifespan) in a template that ran the app's lifespan startup ([worker.python] lifespan
# = "template"): the lifespan's task waits on that loop, which stays open and idle until the
# template retires and runs the lifespan's shutdown.
TEMPLATE_LIFESPAN = None


def forget_template_loop():
    """In a child: let go of the template's event loop, closing this process's copies of its
    descriptors (the template's own stay open), and never run it: its lifespan task is the
    template's."""
    loop, _ = TEMPLATE_LIFESPAN
    import asyncio

    asyncio.set_event_loop(None)
    # Not loop.close(): it would unregister the loop's descriptors from the epoll instance this
    # process shares with the template (one open file across the fork) and so break the
    # template's loop. Closing this process's copies leaves the template's registrations be.
    for sock in self_pipe(loop):
        sock.close()
    selector = getattr(loop, "_selector", None)
    if selector is not None:
        selector.close()


def self_pipe(loop):
    """The socketpair an asyncio event loop wakes itself with (none known for other loops)."""
    return [sock for sock in (getattr(loop, "_ssock", None), getattr(loop, "_csock", None)) if sock is not None]


def shutdown_template_lifespan(timeout):
    """Run the app's lifespan shutdown in the template, as its generation retires."""
    global TEMPLATE_LIFESPAN
    if TEMPLATE_LIFESPAN is None:
        return
    import asyncio

    loop, lifespan = TEMPLATE_LIFESPAN
    TEMPLATE_LIFESPAN = None
    try:
        loop.run_until_complete(asyncio.wait_for(lifespan.shutdown(), timeout))
    except asyncio.TimeoutError:
        print(f"warmpool: the app's lifespan shutdown did not finish within {timeout} s", file=sys.stderr)
    finally:
        loop.close()


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


# --- what the template learned from traffic --------------------------------------------------


def preload(args):
    """Import the operator's preload list (a failure fails the template, as the app's own import
    would), then the modules warmpool learned that forked workers import after their fork
    (internal/learn), one by one. A learned module that fails to import is dropped; one that
    starts a thread or opens a connection is dropped as fatal, and stops the preload: this
    process can no longer fork, and warmpool starts a new template without it. Returns
    (preloaded {module: milliseconds}, dropped [{module, reason, fatal}])."""
    for name in args.preload:
        importlib.import_module(name)
    if not args.learned:
        return {}, []
    with open(args.learned) as f:
        names = json.load(f).get("modules", [])
    allowed = set(args.allow_sockets)
    preloaded, dropped = {}, []
    for name in names:
        if name in sys.modules:
            continue  # imported by the app, or by a module before it
        threads, fds = thread_count(), open_descriptors()
        start = time.perf_counter()
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as e:
            dropped.append({"module": name, "reason": f"import failed: {type(e).__name__}: {e}", "fatal": False})
            continue
        took = (time.perf_counter() - start) * 1000
        started = new_threads(threads)
        if started:
            dropped.append({"module": name, "reason": f"its import started {started}", "fatal": True})
            break
        opened = inherited_sockets(allowed, fds)
        if opened:
            conns = ", ".join(f"fd {c['fd']} ({c['kind']} to {c['peer']})" for c in opened)
            dropped.append({"module": name, "reason": f"its import opened connections: {conns}", "fatal": True})
            break
        preloaded[name] = round(took, 3)
    return preloaded, dropped


def thread_count():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def open_descriptors():
    try:
        return {int(name) for name in os.listdir("/proc/self/fd")}
    except OSError:
        return set()


def new_threads(before, grace=0.2):
    """What started since there were `before` threads, named; "" when none still runs after
    grace (a thread that just ended may be listed for a moment)."""
    deadline = time.monotonic() + grace
    while thread_count() > before:
        if time.monotonic() >= deadline:
            names = [f"{t.name!r} ({describe(getattr(t, '_target', None) or type(t).run)})"
                     for t in threading.enumerate() if t is not threading.current_thread()]
            return "a thread: " + (", ".join(names) if names else "one the threading module does not know (a C extension's)")
        time.sleep(0.01)
    return ""


# How long a forked worker gathers the names of the modules it imports before it sends them, and
# how large one report may be (warmpool reads up to 64 KiB).
REPORT_DELAY = 0.5
REPORT_LIMIT = 60000


class ImportReporter:
    """In a forked worker: notes the modules it imports after the fork and sends their names to
    warmpool, which learns from them what the next template imports (internal/learn).

    It is a finder first on sys.meta_path that finds nothing: the import system asks it only
    about modules not imported yet, so a warm worker never calls it, and every import goes on
    as without it. The names of a burst of imports go in datagrams on a unix socket REPORT_DELAY
    after its first; a report that cannot be sent at once is dropped (learning is best effort,
    serving never waits for it). warmpool takes reports only from its workers' pids.

    Fork safety: it is made in the child, after the fork; the template never has one."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.names = []
        self.timer = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)

    def find_spec(self, name, path=None, target=None):
        with self.lock:
            self.names.append(name)
            if self.timer is None:
                self.timer = threading.Timer(REPORT_DELAY, self.flush)
                self.timer.daemon = True
                self.timer.start()
        return None

    def flush(self):
        with self.lock:
            names, self.names, self.timer = self.names, [], None
        batch, size = [], 16
        for name in dict.fromkeys(names):
            if name not in sys.modules:
                continue  # not found, or its import failed
            if size + len(name) + 4 > REPORT_LIMIT:
                self.send(batch)
                batch, size = [], 16
            batch.append(name)
            size += len(name) + 4
        if batch:
            self.send(batch)

    def send(self, names):
        try:
            self.sock.sendto(json.dumps({"modules": names}).encode(), self.path)
        except OSError:
            pass


def report_imports(path):
    """Install the ImportReporter in this (forked) worker, when warmpool learns."""
    if path:
        sys.meta_path.insert(0, ImportReporter(path))


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


def warm_asgi(app, listener, ctl, lifespan="worker"):
    """Serve the warm-up plan with uvicorn in this thread until a control message arrives.

    lifespan "template": the app's lifespan startup runs here first, once, and its task stays
    pending on this thread's event loop, which is left open and idle (not closed) for the forks:
    the template runs the shutdown when it retires. "worker": the warm-up's server runs the
    lifespan's startup and shutdown itself, and every worker runs its own."""
    import asyncio

    import uvicorn

    config = uvicorn.Config(app, lifespan="auto", log_level="warning", access_log=False)
    # As Server.run() does in each child: the event loop the children run (uvloop when it is
    # installed) is the one the template warms with, and is imported here, not in every child.
    config.setup_event_loop()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    started = None
    if lifespan == "template":
        config.load()
        started = config.lifespan_class(config)
        loop.run_until_complete(started.startup())
        if started.should_exit:
            raise SystemExit("warmpool: the app's lifespan startup failed (its error is above)")
        InheritedLifespan.state = getattr(started, "state", {})
        config.lifespan_class = InheritedLifespan
    server = uvicorn.Server(config)

    async def main():
        def stop():
            loop.remove_reader(ctl.fileno())
            server.should_exit = True

        loop.add_reader(ctl.fileno(), stop)
        await server.serve(sockets=[listener])

    loop.run_until_complete(main())
    # uvicorn's signal handlers belong to a loop that runs; the template's loop does not.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    # The loop's default executor runs threads, which no fork may copy.
    loop.run_until_complete(loop.shutdown_default_executor())
    if started is None:
        loop.close()
        asyncio.set_event_loop(None)
        return
    global TEMPLATE_LIFESPAN
    TEMPLATE_LIFESPAN = (loop, started)


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
        # thread, and Django's connections are per thread: the ones the warm-up opened there
        # are closed there. The thread is then stopped, and made anew in each child.
        if django_db is not None:
            try:
                executor.submit(django_db.connections.close_all).result(timeout=30)
                closed.append("Django database connections of asgiref's thread")
            except RuntimeError:
                pass  # shut down already: no thread, no connection
        executor.shutdown(wait=True)
        closed.append("asgiref's thread-sensitive executor")
    return closed


def inherited_sockets(allowed, own=()):
    """The connections this process holds, besides warmpool's own (the descriptors in own):
    connected stream sockets, TCP or unix, each {fd, kind, peer}. A fork would share each one
    with every worker, which then interleave their traffic on it. allowed lists the peers the
    operator lets through ("host:port", or a unix socket's path)."""
    found = []
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return found
    for fd in fds:
        if fd in own:
            continue
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        try:
            if sock.type not in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
                continue  # a datagram socket carries whole messages: sharing mixes nothing
            try:
                peer = sock.getpeername()
            except OSError:
                continue  # listening, or not connected
            if sock.family == socket.AF_UNIX:
                kind, name = "unix", peer if isinstance(peer, str) else peer.decode(errors="replace")
                name = name or "an unnamed socket (a socketpair)"
            elif sock.family in (socket.AF_INET, socket.AF_INET6):
                kind = "tcp" if sock.family == socket.AF_INET else "tcp6"
                host, port = peer[0], peer[1]
                name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            else:
                continue
            if name in allowed or name.strip("[]") in allowed:
                continue
            found.append({"fd": fd, "kind": kind, "peer": name})
        finally:
            sock.close()
    return found


def own_descriptors():
    """warmpool's descriptors in a template: the control socket, and the self-pipe of the event
    loop its lifespan waits on."""
    own = {CONTROL_FD}
    if TEMPLATE_LIFESPAN is not None:
        loop, _ = TEMPLATE_LIFESPAN
        own.update(sock.fileno() for sock in self_pipe(loop))
    return own


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
    """Close what must not cross a fork and check the threads and connections that remain: the
    prepared reply's fields."""
    closed = close_before_fork()
    run_hook(args.pre_fork)
    threads = extra_threads()
    sockets = inherited_sockets(set(args.allow_sockets), own_descriptors())
    if threads or sockets:
        return {"ok": False, "threads": threads, "sockets": sockets, "closed": closed}
    gc.collect()
    gc.freeze()
    return {"ok": True, "threads": [], "sockets": [], "closed": closed}


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
        report_imports(args.learn_socket)
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
    preloaded, dropped = preload(args)
    send(ctl, "imported", preloaded=preloaded, dropped=dropped)
    if args.interface == "asgi":
        warm_asgi(app, listener, ctl, args.lifespan)
    else:
        warm_wsgi(app, listener, ctl)
    message, fds = receive(ctl)
    if message is None:
        return
    if message["type"] != "prepare":
        raise SystemExit(f"warmpool: expected prepare, got {message!r}")
    try:
        listener.close()
    except OSError:
        pass
    # warmpool retires a template by closing its control socket, then SIGTERM: either ends the
    # loop below, and the app's lifespan shutdown (when it ran here) runs before the exit.
    signal.signal(signal.SIGTERM, exit_on_signal)
    try:
        result = prepare(args)
        send(ctl, "prepared", **result)
        serve_control(args, app, ctl, result["ok"])
    finally:
        shutdown_template_lifespan(LIFESPAN_SHUTDOWN_TIMEOUT)


# How long the app's lifespan shutdown may take in a retiring template: warmpool sends SIGKILL
# 5 s after it asked the template to stop.
LIFESPAN_SHUTDOWN_TIMEOUT = 4.0


def exit_on_signal(_signum, _frame):
    raise SystemExit(0)


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
    for name in args.preload:
        importlib.import_module(name)
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
    parser.add_argument("--lifespan", choices=["template", "worker"], default="worker")
    parser.add_argument("--allow-socket", action="append", default=[], dest="allow_sockets")
    parser.add_argument("--preload", action="append", default=[])
    parser.add_argument("--learned", default="", help="a JSON file: the learned modules to import")
    parser.add_argument("--learn-socket", default="", help="where forked workers report their imports")
    args = parser.parse_args(argv)
    # The app is imported from the worker's directory, as `python -m` or gunicorn would.
    sys.path.insert(0, os.getcwd())
    if args.mode == "template":
        template_main(args)
    else:
        serve_main(args)


if __name__ == "__main__":
    main()
