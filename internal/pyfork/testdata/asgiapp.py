"""An ASGI app for warmpool's fork tests (standard library only). Its answer says which process
served it, which process built its warm state, and the modules imported since the fork."""
import json
import os
import sys
import time

_warm_pid = None
_modules_at_fork = set()
os.register_at_fork(after_in_child=lambda: _modules_at_fork.update(sys.modules))


async def application(scope, receive, send):
    global _warm_pid
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if _warm_pid is None:
        time.sleep(0.2)
        _warm_pid = os.getpid()
    imported = sorted(set(sys.modules) - _modules_at_fork) if _modules_at_fork else None
    body = json.dumps({"pid": os.getpid(), "warmed_in": _warm_pid, "imported": imported}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
