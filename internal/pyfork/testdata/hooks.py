"""Fork hooks for warmpool's tests: each appends its name and pid to $HOOK_LOG."""
import os


def _note(what):
    path = os.environ.get("HOOK_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{what} {os.getpid()} {os.environ.get('WARMPOOL_WORKER_ID', '')}\n")


def post_fork():
    _note("post_fork")


def pre_fork():
    _note("pre_fork")


def hang():
    """A pre_fork that never returns: the template is never ready to fork."""
    import time

    time.sleep(3600)
