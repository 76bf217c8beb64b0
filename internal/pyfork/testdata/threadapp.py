"""A WSGI app that starts a thread at import, as metrics exporters and SDKs do: its template
must refuse to fork, and warmpool start its workers as fresh processes."""
import threading
import time


def _flush_metrics_forever():
    while True:
        time.sleep(1)


threading.Thread(target=_flush_metrics_forever, name="metrics-flusher", daemon=True).start()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
