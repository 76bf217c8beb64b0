"""A FastAPI app of Debian's FastAPI 0.92, which runs @app.on_event("startup") handlers from the
app's lifespan: warmpool's lifespan tests. As lifespanapp.py, it logs its startups to
$LIFESPAN_LOG and says which process built its state."""
import os

from fastapi import FastAPI

application = FastAPI()
state = {}


def note(event):
    with open(os.environ["LIFESPAN_LOG"], "a") as f:
        f.write(f"{event} {os.getpid()}\n")


@application.on_event("startup")
async def load_model():
    note("startup")
    state["built_in"] = os.getpid()


@application.on_event("shutdown")
async def unload_model():
    note("shutdown")


@application.get("/")
async def index():
    return {"pid": os.getpid(), "built_in": state.get("built_in")}
