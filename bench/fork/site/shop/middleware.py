"""A reporting middleware that imports pandas lazily, on the first request of each process, under
a process-wide lock (as real sites' lazy imports of heavy libraries do): every request of the
process waits for it. The request that paid for the import is marked X-Cold: 1, so the benchmark
can count the requests that met a cold worker. A fork of a warm template finds pandas imported."""
import os
import threading

_lock = threading.Lock()
_pandas = None


def _load_pandas():
    global _pandas
    if _pandas is not None:
        return False
    with _lock:
        if _pandas is not None:
            return False
        import pandas

        _pandas = pandas
        return True


class ReportingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        cold = _load_pandas()
        response = self.get_response(request)
        response["X-Worker-Pid"] = str(os.getpid())
        if cold:
            response["X-Cold"] = "1"
        return response
