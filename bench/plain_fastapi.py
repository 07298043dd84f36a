"""The reference for the HTTP benchmark: the same no-op called in-process by a FastAPI route."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from bench.apps import noop

api = FastAPI()


@api.post("/noop")
def call_noop() -> dict[str, None]:
    return {"output": noop()}


if __name__ == "__main__":
    uvicorn.run(api, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
