"""A producer's calls on the request store from an event loop (redis.asyncio): submit, wait
for the end, read, cancel. The async twin of :class:`jobcord.storage.requests.RequestStore`'s
producer side, over the same scripts and keys.

The sync store stays the one place that builds a submission's arguments and reads the
script's reply (:meth:`RequestStore.submitted`), so both paths always write the same record.
A wait is an XREAD BLOCK of the request's event stream, as on the sync path: no thread, no
polling, so any number of callers on one loop each wait for their own timeout.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from . import durability, keys
from .async_scripts import AsyncScripts
from .direct import as_dict, stream_entries
from .errors import RequestNotFound
from .records import RequestRecord
from .requests import InlineOutput, NewRequest, RequestStore, Submission
from .statuses import Status

__all__ = ["AsyncRequestStore"]

#: The longest one blocking read (the socket timeout of jobcord's clients is longer).
_BLOCK_S = 5.0


class AsyncRequestStore:
    def __init__(self, client: aioredis.Redis, store: RequestStore) -> None:
        self.client = client
        self.store = store
        self.settings = store.settings
        self.scripts = AsyncScripts(client, functions=store.settings.redis_functions)

    async def submit(self, req: NewRequest) -> Submission:
        """:meth:`RequestStore.submit`: the submit script (and, when submits must reach
        replicas or the AOF first, its WAIT in the same write)."""
        args = self.store._submit_args(req, self.store._fields(req))  # one builder for both
        wait = durability.wait_command(self.settings)
        reply, acked = await self.scripts.call_then("submit", wait, *args)
        submission = self.store.submitted(req, reply)  # a conflict or a full app: said as such
        if wait is not None:
            durability.check(self.settings, acked)
        return submission

    async def get(self, request_id: str) -> RequestRecord:
        raw = as_dict(await self.client.hgetall(keys.record_key(request_id)))  # type: ignore[misc]
        if not raw:
            raise RequestNotFound(request_id)
        return RequestRecord.from_hash(raw)

    async def cancel(self, request_id: str) -> Status:
        """Cancel a queued request now, or ask its worker to stop a running one."""
        retention = int(self.settings.record_retention_s)
        outcome, status = await self.scripts("cancel", request_id, retention)
        if outcome == "missing":
            raise RequestNotFound(request_id)
        return Status(status)

    async def wait_terminal(
        self, request_id: str, *, timeout_s: float | None, inline_output: bool = False
    ) -> tuple[RequestRecord | InlineOutput | None, Status]:
        """:meth:`RequestStore.wait_terminal` on the event loop: (the record, its status)
        once terminal, or (None, the last status seen) after ``timeout_s`` (0: look once,
        do not wait); with ``inline_output`` a success's small output straight from its
        terminal event."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # Nothing stored yet means QUEUED: the first QUEUED event is never stored.
        stream, after, last = keys.events_key(request_id), "0-0", Status.QUEUED
        while True:
            left = _BLOCK_S if deadline is None else min(_BLOCK_S, deadline - time.monotonic())
            # Time up (or a timeout of 0): one last look without blocking, so a request that
            # has ended is seen as ended whatever the timeout.
            block = max(1, int(left * 1000)) if left > 0 else None
            reply: Any = await self.client.xread({stream: after}, block=block)
            entries = stream_entries(reply)
            if not entries:
                if not await self.client.exists(keys.record_key(request_id)):
                    raise RequestNotFound(request_id)
                if block is None:
                    return None, last
                continue
            after, data = entries[-1]
            last = Status(data["status"])
            if not last.is_terminal:
                continue
            if inline_output and last is Status.SUCCEEDED and "output" in data:
                return InlineOutput(data["output"]), last
            record = await self.get(request_id)
            if record.status.is_terminal:
                return record, record.status
            last = record.status  # run again since (a rerun): read on
