"""The ASGI way of bench/fork as a FastAPI 0.92 app (Debian's), with on_event("startup"): the
same model as starlette_app.py."""
import os

from fastapi import FastAPI, Request

from starlette_app import load_model

app = FastAPI()


@app.on_event("startup")
async def startup():
    app.state.model = load_model()


@app.get("/")
async def predict(request: Request, n: int = 1000):
    model = request.app.state.model
    return {"pid": os.getpid(), "built_in": model["built_in"], "score": sum(model["weights"][:n])}
