"""The benchmark's fork hooks."""
import os
import threading


def start_thread_at_import():
    """BENCH_THREAD_AT_IMPORT=1 starts a thread as an SDK would: the template must then refuse
    to fork, and warmpool start fresh processes (the benchmark's fresh-helper scenario)."""
    if os.environ.get("BENCH_THREAD_AT_IMPORT") == "1":
        threading.Thread(target=threading.Event().wait, name="bench-sdk-thread", daemon=True).start()


def post_fork():
    pass
