"""Unit tests of warmpool's Python helper (helper.py); the Go tests run it as a whole.

Run: python3 -m unittest -v helper_test (from internal/pyfork); `go test ./internal/pyfork` runs
them too.
"""
import gc
import json
import os
import socket
import sys
import threading
import types
import unittest

import helper


class LoadTest(unittest.TestCase):
    def test_module_and_dotted_attribute(self):
        self.assertIs(helper.load("os.path:join"), os.path.join)
        self.assertEqual(helper.load("helper_test:LoadTest.__name__"), "LoadTest")

    def test_not_module_callable_is_an_error(self):
        for spec in ["mysite/wsgi.py", "mysite.wsgi", ":app", "mysite:"]:
            with self.assertRaises(SystemExit, msg=spec):
                helper.load(spec)

    def test_missing_module_raises_import_error(self):
        with self.assertRaises(ImportError):
            helper.load("no_such_module_here:app")


class ImportServerTest(unittest.TestCase):
    def test_a_missing_server_names_what_to_install_and_cannot_heal(self):
        import contextlib
        import io

        saved = {name: sys.modules.get(name) for name in ["waitress", "waitress.server"]}
        sys.modules["waitress"] = None  # makes "import waitress" raise ImportError
        sys.modules["waitress.server"] = None
        stderr = io.StringIO()
        try:
            with self.assertRaises(SystemExit) as caught, contextlib.redirect_stderr(stderr):
                helper.import_server("wsgi")
        finally:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
        # The exit status tells warmpool that retrying cannot help.
        self.assertEqual(caught.exception.code, helper.EXIT_UNFIXABLE)
        message = stderr.getvalue()
        self.assertIn("cannot import waitress", message)
        self.assertIn("pip install waitress", message)
        self.assertIn("worker.python.executable", message)


class ThreadsTest(unittest.TestCase):
    def test_no_extra_thread_here(self):
        self.assertEqual(helper.extra_threads(), [])

    def test_a_thread_just_joined_is_not_counted(self):
        # The OS may list a joined thread for a moment after Python is done with it.
        for _ in range(50):
            t = threading.Thread(target=lambda: None)
            t.start()
            t.join()
            self.assertEqual(helper.extra_threads(), [])

    def test_a_running_thread_is_named_with_its_target(self):
        stop = threading.Event()

        def exporter_loop():
            stop.wait()

        t = threading.Thread(target=exporter_loop, name="exporter", daemon=True)
        t.start()
        try:
            found = helper.extra_threads()
        finally:
            stop.set()
            t.join()
        self.assertEqual(len(found), 1, found)
        self.assertEqual(found[0]["name"], "exporter")
        self.assertTrue(found[0]["target"].endswith("exporter_loop"), found[0])


class Args:
    pre_fork = ""
    post_fork = ""
    allow_sockets = []


class PrepareTest(unittest.TestCase):
    def setUp(self):
        self.saved = {name: sys.modules.get(name) for name in ["django.db", "numpy", "asgiref.sync"]}

    def tearDown(self):
        for name, module in self.saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        gc.unfreeze()

    def test_django_connections_are_closed_and_the_gc_frozen(self):
        closed = []
        fake = types.ModuleType("django.db")
        fake.connections = types.SimpleNamespace(close_all=lambda: closed.append(True))
        sys.modules["django.db"] = fake
        result = helper.prepare(Args())
        self.assertEqual(result["ok"], True, result)
        self.assertEqual(closed, [True])
        self.assertIn("Django database connections", result["closed"])
        self.assertGreater(gc.get_freeze_count(), 0)

    def test_pre_fork_runs_before_the_thread_check(self):
        calls = []
        module = types.ModuleType("prefork_hooks")
        module.pre_fork = lambda: calls.append("pre_fork")
        sys.modules["prefork_hooks"] = module
        args = Args()
        args.pre_fork = "prefork_hooks:pre_fork"
        try:
            helper.prepare(args)
        finally:
            del sys.modules["prefork_hooks"]
        self.assertEqual(calls, ["pre_fork"])

    def test_a_thread_refuses_the_fork(self):
        stop = threading.Event()
        t = threading.Thread(target=stop.wait, name="sdk-flusher", daemon=True)
        t.start()
        try:
            result = helper.prepare(Args())
        finally:
            stop.set()
            t.join()
        self.assertEqual(result["ok"], False)
        self.assertEqual([th["name"] for th in result["threads"]], ["sdk-flusher"])
        self.assertEqual(gc.get_freeze_count(), 0, "a refused template must not freeze")

    def test_a_connection_refuses_the_fork_naming_it_unless_allowed(self):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        host, port = server.getsockname()
        client = socket.create_connection((host, port))
        accepted, _ = server.accept()
        try:
            result = helper.prepare(Args())
            self.assertEqual(result["ok"], False)
            self.assertNotEqual(result["sockets"], [])
            # (prepare leaves fd 4 out, warmpool's control socket in a template: here it may be
            # any of these, so the names are read with nothing left out.)
            found = helper.inherited_sockets(set(), own=set())
            peers = {(s["fd"], s["kind"], s["peer"]) for s in found}
            # The client's end names the server; the accepted end names the client. The
            # listening socket is not connected: it is not reported.
            self.assertIn((client.fileno(), "tcp", f"{host}:{port}"), peers)
            self.assertIn((accepted.fileno(), "tcp", "%s:%d" % accepted.getpeername()), peers)
            self.assertNotIn(server.fileno(), [s["fd"] for s in found])
            args = Args()
            args.allow_sockets = [f"{host}:{port}", "%s:%d" % accepted.getpeername()]
            self.assertEqual(helper.prepare(args)["sockets"], [])
        finally:
            client.close()
            accepted.close()
            server.close()

    def test_a_unix_connection_is_named_by_its_path(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "db.sock")
            server = socket.socket(socket.AF_UNIX)
            server.bind(path)
            server.listen()
            client = socket.socket(socket.AF_UNIX)
            client.connect(path)
            try:
                found = helper.inherited_sockets(set(), own=set())
                self.assertIn({"fd": client.fileno(), "kind": "unix", "peer": path}, found)
                self.assertEqual(helper.inherited_sockets({path}, own={}), [s for s in found if s["peer"] != path])
            finally:
                client.close()
                server.close()

    def test_django_connections_on_asgirefs_thread_are_closed_there(self):
        from concurrent.futures import ThreadPoolExecutor

        closed_in = []
        fake_db = types.ModuleType("django.db")
        fake_db.connections = types.SimpleNamespace(close_all=lambda: closed_in.append(threading.current_thread().name))
        sys.modules["django.db"] = fake_db
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asgiref-thread")
        fake_sync = types.ModuleType("asgiref.sync")
        fake_sync.SyncToAsync = types.SimpleNamespace(single_thread_executor=executor)
        sys.modules["asgiref.sync"] = fake_sync
        closed = helper.close_before_fork()
        self.assertEqual(closed_in[0], threading.current_thread().name)
        self.assertTrue(closed_in[1].startswith("asgiref-thread"), closed_in)
        self.assertIn("Django database connections of asgiref's thread", closed)

    def test_numpy_is_reseeded_in_a_child(self):
        seeded = []
        fake = types.ModuleType("numpy")
        fake.random = types.SimpleNamespace(seed=lambda: seeded.append(True))
        sys.modules["numpy"] = fake
        helper.reopen_after_fork()
        self.assertEqual(seeded, [True])


class UvicornSurfaceTest(unittest.TestCase):
    """What the inherited lifespan relies on in the installed uvicorn (Debian's 0.17.6 in CI):
    the server makes its lifespan from config.lifespan_class and awaits its startup and
    shutdown; a uvicorn that has lifespan state hands requests a copy of lifespan.state."""

    def setUp(self):
        try:
            import uvicorn  # noqa: F401
        except ImportError:
            self.skipTest("uvicorn is not installed for this interpreter (Debian: python3-uvicorn)")

    def test_the_server_uses_config_lifespan_class(self):
        import inspect

        import uvicorn

        serve = inspect.getsource(uvicorn.Server.serve)
        self.assertIn("config.lifespan_class(config)", serve)
        startup = inspect.getsource(uvicorn.Server.startup)
        self.assertIn("self.lifespan.startup()", startup)
        self.assertIn("self.lifespan.should_exit", startup)

    def test_an_inherited_lifespan_serves_without_startup(self):
        import asyncio

        import uvicorn

        started = []

        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                started.append(True)  # must not run: the lifespan is the template's
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": str(scope.get("state", {}).get("model")).encode()})

        helper.InheritedLifespan.state = {"model": "loaded"}
        config = uvicorn.Config(app, lifespan="auto", log_level="error")
        config.load()
        config.lifespan_class = helper.InheritedLifespan
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(config)

        async def main():
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            reader, writer = await asyncio.open_connection(*sock.getsockname())
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            server.should_exit = True
            await task
            return answer

        answer = asyncio.run(main())
        self.assertEqual(started, [])
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        # A uvicorn with lifespan state (0.21+) passes it to each request.
        import uvicorn.lifespan.on as on

        if "state" in inspect_source(on.LifespanOn.__init__):
            self.assertIn(b"loaded", answer)


def inspect_source(fn):
    import inspect

    return inspect.getsource(fn)


class ControlTest(unittest.TestCase):
    """The template's end of the control protocol; warmpool's end writes plain JSON."""

    def setUp(self):
        self.warmpool, self.template = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def tearDown(self):
        self.warmpool.close()
        self.template.close()

    def replies(self):
        out = []
        self.warmpool.settimeout(5)
        while True:
            data = self.warmpool.recv(1 << 16)
            if not data:
                return out
            out.append(json.loads(data))

    def test_ops_carry_descriptors(self):
        r, w = os.pipe()
        try:
            socket.send_fds(self.warmpool, [b'{"type":"fork","id":7,"env":{},"warmpool_pid":1}'], [r])
            message, fds = helper.receive(self.template)
            self.assertEqual(message, {"type": "fork", "id": 7, "env": {}, "warmpool_pid": 1})
            self.assertEqual(len(fds), 1)
            os.write(w, b"x")
            self.assertEqual(os.read(fds[0], 1), b"x")
            os.close(fds[0])
            self.warmpool.shutdown(socket.SHUT_WR)
            self.assertEqual(helper.receive(self.template), (None, []))
        finally:
            os.close(r)
            os.close(w)

    def test_replies_are_typed_and_complete(self):
        helper.send(self.template, "forked", pid=42)
        self.assertEqual(json.loads(self.warmpool.recv(1 << 16)), {"type": "forked", "pid": 42})
        with self.assertRaises(helper.ProtocolError):
            helper.send(self.template, "forked")  # its field is missing
        with self.assertRaises(helper.ProtocolError):
            helper.send(self.template, "pid", pid=1)  # no such reply

    def test_unknown_ops_are_refused_and_their_descriptors_closed(self):
        r, w = os.pipe()
        try:
            socket.send_fds(self.warmpool, [b'{"type":"explode"}'], [r])
            with self.assertRaises(helper.ProtocolError):
                helper.receive(self.template)
            self.warmpool.send(b'{"type":"ping"}')  # its seq is missing
            with self.assertRaises(helper.ProtocolError):
                helper.receive(self.template)
        finally:
            os.close(r)
            os.close(w)

    def test_pings_are_answered_and_ops_it_cannot_do_fail(self):
        self.warmpool.send(b'{"type":"ping","seq":3}')
        self.warmpool.send(b'{"type":"prepare"}')  # only once, before the forks
        self.warmpool.send(b'{"type":"release","pid":99}')  # none pending: no reply
        self.warmpool.send(b'{"type":"ping","seq":4}')
        self.warmpool.shutdown(socket.SHUT_WR)
        helper.serve_control(None, None, self.template, can_fork=True)
        self.template.shutdown(socket.SHUT_WR)
        self.assertEqual(self.replies(), [
            {"type": "pong", "seq": 3},
            {"type": "failed", "error": "cannot 'prepare' now"},
            {"type": "pong", "seq": 4},
        ])


if __name__ == "__main__":
    unittest.main()


class PreloadTest(unittest.TestCase):
    """The learned modules a template imports: one that fails is dropped, one that starts a thread
    or opens a connection is dropped as fatal and ends the preload."""

    def setUp(self):
        import tempfile

        self.dir = tempfile.mkdtemp()
        sys.path.insert(0, self.dir)
        self.stop = threading.Event()
        self.held = []
        helper_test_hooks.update(stop=self.stop, held=self.held)
        self.modules = []

    def tearDown(self):
        self.stop.set()
        for sock in self.held:
            sock.close()
        sys.path.remove(self.dir)
        for name in self.modules:
            sys.modules.pop(name, None)

    def module(self, name, source):
        with open(os.path.join(self.dir, name + ".py"), "w") as f:
            f.write(source)
        self.modules.append(name)
        return name

    def run_preload(self, names):
        path = os.path.join(self.dir, "learned.json")
        with open(path, "w") as f:
            json.dump({"modules": names}, f)

        class PreloadArgs(Args):
            preload = []
            learned = path

        return helper.preload(PreloadArgs)

    def test_failing_and_threaded_imports_are_dropped(self):
        good = self.module("wp_good", "VALUE = 1\n")
        bad = self.module("wp_bad", "raise RuntimeError('needs what post_fork opens')\n")
        thready = self.module("wp_thready", "import threading, helper_test\n"
                              "threading.Thread(target=helper_test.helper_test_hooks['stop'].wait, name='flusher').start()\n")
        after = self.module("wp_after", "VALUE = 2\n")
        preloaded, dropped = self.run_preload([good, "os", bad, thready, after])
        self.assertEqual(list(preloaded), [good])  # os was imported already: nothing to do
        self.assertGreaterEqual(preloaded[good], 0)
        self.assertEqual([(d["module"], d["fatal"]) for d in dropped], [(bad, False), (thready, True)])
        self.assertIn("RuntimeError: needs what post_fork opens", dropped[0]["reason"])
        self.assertIn("flusher", dropped[1]["reason"])
        self.assertNotIn(after, sys.modules)  # the template is unfit: the preload stopped

    def test_a_connection_opened_by_an_import_is_fatal(self):
        conn = self.module("wp_conn", "import socket, helper_test\n"
                           "a, b = socket.socketpair()\nhelper_test.helper_test_hooks['held'].extend([a, b])\n")
        preloaded, dropped = self.run_preload([conn])
        self.assertEqual(preloaded, {})
        self.assertEqual(len(dropped), 1)
        self.assertTrue(dropped[0]["fatal"])
        self.assertIn("opened connections", dropped[0]["reason"])
        self.assertIn("unix to an unnamed socket", dropped[0]["reason"])


helper_test_hooks = {}


class ImportReporterTest(unittest.TestCase):
    def test_the_modules_imported_after_install_are_reported_once(self):
        import tempfile

        d = tempfile.mkdtemp()
        path = os.path.join(d, "learn.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        server.settimeout(5)
        with open(os.path.join(d, "wp_reported.py"), "w") as f:
            f.write("import wp_reported_dep\n")
        with open(os.path.join(d, "wp_reported_dep.py"), "w") as f:
            f.write("")
        sys.path.insert(0, d)
        reporter = helper.ImportReporter(path)
        sys.meta_path.insert(0, reporter)
        try:
            import wp_reported  # noqa: F401

            with self.assertRaises(ImportError):
                import wp_not_there  # noqa: F401
            import json as _json  # imported already: the finder is not asked  # noqa: F401

            report = json.loads(server.recv(65536))
        finally:
            sys.meta_path.remove(reporter)
            reporter.sock.close()
            sys.path.remove(d)
            server.close()
            for name in ["wp_reported", "wp_reported_dep"]:
                sys.modules.pop(name, None)
        self.assertEqual(report, {"modules": ["wp_reported", "wp_reported_dep"]})
