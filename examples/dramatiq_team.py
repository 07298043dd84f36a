"""A team on dramatiq adds a GPU job: its CPU actors call jobcord, completions come back as
dramatiq messages. Run it (with jobcord's Redis at JOBCORD_REDIS_URL):

    jobcord worker examples.dramatiq_team:app          # runs the GPU job
    JOBCORD_DRAMATIQ_BROKER_URL=redis://localhost:6379/5 jobcord scheduler   # sends completions
    DRAMATIQ_URL=redis://localhost:6379/5 dramatiq examples.dramatiq_team     # the team's workers
    python -c "from examples.dramatiq_team import ingest; ingest.send('doc-1', 'some text')"
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from jobcord import App
from jobcord.dramatiq import JobcordMiddleware, actor

# --- the GPU side: a jobcord app (its own workers, pinned to devices) ---------------------
app = App("dqteam")


@app.job(timeout=300, retries=2)
def embed(text: str) -> list[float]:
    """Stands in for a model on a GPU."""
    return [len(text) / 10.0, float(sum(map(ord, text)) % 97)]


# --- the team's dramatiq code, unchanged but for one middleware ----------------------------
broker = RedisBroker(url=os.environ.get("DRAMATIQ_URL", "redis://localhost:6379/5"))
broker.add_middleware(JobcordMiddleware())  # message-keyed calls, completions run once
dramatiq.set_broker(broker)


@dramatiq.actor
def ingest(doc_id: str, text: str) -> None:
    """A CPU actor: queues the GPU job and returns at once; ``stored`` gets the result.
    A redelivered ``ingest`` finds the same request (its key is the message's id)."""
    embed.async_run_remote(text, on_complete=stored.message(doc_id))


@dramatiq.actor
def stored(doc_id: str, request: dict[str, Any]) -> None:
    """Runs once per finished request, with the request as GET /v1/requests/{id} returns it."""
    if request["status"] == "SUCCEEDED":
        print(f"{doc_id}: {request['output']}")
    else:
        print(f"{doc_id}: {request['status']} {request['error']}")


#: The job as an actor of its own: ``embed_actor.send(text)``, or a step of a pipeline:
#: ``dramatiq.pipeline([embed_actor.message("hi"), next_step.message()]).run()``.
embed_actor = actor(embed)
