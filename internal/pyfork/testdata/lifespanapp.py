"""A Starlette app whose lifespan does the heavy work, as FastAPI documents: warmpool's lifespan
tests. Each startup and shutdown appends "startup PID" or "shutdown PID" to $LIFESPAN_LOG; its
answer says which process serves it and which one ran the startup that built its state."""
import contextlib
import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


def note(event):
    with open(os.environ["LIFESPAN_LOG"], "a") as f:
        f.write(f"{event} {os.getpid()}\n")


@contextlib.asynccontextmanager
async def lifespan(app):
    note("startup")
    app.state.model = {"built_in": os.getpid(), "weights": list(range(100000))}
    yield
    note("shutdown")


async def index(request):
    model = request.app.state.model
    return JSONResponse({"pid": os.getpid(), "built_in": model["built_in"], "weights": len(model["weights"])})


application = Starlette(routes=[Route("/", index)], lifespan=lifespan)
