"""An app whose job processes cannot start while a test says so (test_crashloop.py).

Its on_startup reads ``jobcord:test:crashloop:mode`` in Redis each time a child starts:
absent, it starts; ``exit``: the process exits with code 3 (as one dying at import would);
``raise``: on_startup raises; ``hang``: on_startup never returns. Every start is counted
(``jobcord:test:crashloop:startups``) and its pid kept (``jobcord:test:crashloop:pids``), so a
test can bound the restarts and check that no process of it is left.
"""

from __future__ import annotations

import os
import time

import redis

from jobcord.producers import App

app = App("crashloop")

MODE = "jobcord:test:crashloop:mode"
STARTUPS = "jobcord:test:crashloop:startups"
PIDS = "jobcord:test:crashloop:pids"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"], decode_responses=True)


@app.on_startup()
def boot() -> dict[str, int]:
    r = _redis()
    pipe = r.pipeline()
    pipe.incr(STARTUPS)
    pipe.rpush(PIDS, os.getpid())
    pipe.get(MODE)
    mode = pipe.execute()[-1]
    if mode == "exit":
        os._exit(3)
    if mode == "raise":
        raise RuntimeError("the model file is missing")
    if mode == "hang":
        while True:  # a load that never ends (it ignores nothing: SIGTERM ends it)
            time.sleep(1)
    return {"pid": os.getpid()}


@app.job()
def whoami() -> int:
    return os.getpid()
