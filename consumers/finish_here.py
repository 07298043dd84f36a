"""The child's half of the hot path: end a small successful attempt without the parent.

The parent grants it per task (:class:`~consumers.protocol.FinishHere`); the child writes the
inline JSON output with the same fenced finish script the parent would run, acking the broker
message in the same step. Whatever else happens (an output too large or not JSON, Redis
unreachable, a bug) the child answers :class:`~consumers.protocol.Done` and the parent stores
the result on its usual path, with its retries: nothing is lost, nothing written twice (the
finish is fenced by the lease token).
"""

from __future__ import annotations

import structlog

from scheduler.outputs import EncodedOutput
from storage.connection import connect
from storage.requests import BrokerAck, RequestStore
from storage.settings import load_settings
from storage.statuses import Status

from .protocol import Finished, Task
from .results import stays_inline

__all__ = ["ChildFinisher"]

log = structlog.get_logger("jobcord.child")


class ChildFinisher:
    def __init__(self) -> None:
        self._store: RequestStore | None = None  # opened on the first granted finish

    def try_finish(self, task: Task, output: EncodedOutput) -> Finished | None:
        """End ``task`` SUCCEEDED with ``output`` inline; None: the parent must store it."""
        leave = task.finish
        if leave is None or not stays_inline(
            output.content_type, output.data, leave.inline_max_bytes
        ):
            return None
        try:
            if self._store is None:
                settings = load_settings()
                self._store = RequestStore(connect(settings), settings)
            finished, acked = self._store.finish_and_ack(
                task.request_id,
                leave.token,
                Status.SUCCEEDED,
                BrokerAck(*leave.ack) if leave.ack is not None else None,
                output=output.data.decode(),
                progress=1.0,
            )
        except Exception as exc:  # noqa: BLE001 - the parent stores it, riding out outages
            log.warning("child could not finish; the parent stores it", error=repr(exc)[:200])
            return None
        if finished:
            log.info("request finished", request_id=task.request_id, status="SUCCEEDED")
        return Finished(task.fence, finished, acked)
