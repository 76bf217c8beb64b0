"""The ASGI way of bench/fork: a Starlette app that loads its model in its lifespan, as FastAPI
documents: 1.5 s of start-up and about 50 MB of state. Each startup appends its pid to
$STARTUP_LOG, so the benchmark counts them."""
import contextlib
import os
import time

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


def load_model():
    with open(os.environ["STARTUP_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(1.5)  # a client handshake, a download: waiting, not CPU
    # ~50 MB that a worker reads and never writes: a model's weights.
    return {"weights": [float(i) for i in range(2_000_000)], "built_in": os.getpid()}


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.model = load_model()
    yield


async def predict(request):
    model = request.app.state.model
    n = int(request.query_params.get("n", "1000"))
    return JSONResponse({"pid": os.getpid(), "built_in": model["built_in"], "score": sum(model["weights"][:n])})


app = Starlette(routes=[Route("/", predict)], lifespan=lifespan)
