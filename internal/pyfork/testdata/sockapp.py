"""Apps that open a connection at start, as a database or cache client does at import: the
template must not fork with it. $SOCK_PEER is host:port of a listener the test runs."""
import os
import socket

host, port = os.environ["SOCK_PEER"].rsplit(":", 1)
connection = socket.create_connection((host, int(port)))


def application(environ, start_response):
    """WSGI: the connection was opened at import."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


async def asgi_application(scope, receive, send):
    """ASGI: the same connection, and another opened by the lifespan's startup."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                globals()["lifespan_connection"] = socket.create_connection((host, int(port)))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok\n"})
