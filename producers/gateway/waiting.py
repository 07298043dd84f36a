"""Async waits on a request's Redis streams (XREAD BLOCK): the gateway never polls."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from storage.connection import BLOCKING_READ_TIMEOUT_S
from storage.keys import chunks_key, events_key, record_key
from storage.statuses import Status

__all__ = ["Follower"]

_BLOCK_S = 5.0


class Follower:
    def __init__(self, url: str) -> None:
        self.redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=BLOCKING_READ_TIMEOUT_S
        )

    async def close(self) -> None:
        await self.redis.aclose()

    async def events(
        self, request_id: str, timeout_s: float | None = None
    ) -> AsyncIterator[dict[str, str]]:
        """Every status event, in order, until a terminal one (or the timeout)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        after = "0-0"
        while True:
            block = _BLOCK_S if deadline is None else min(_BLOCK_S, deadline - time.monotonic())
            if block <= 0:
                return
            reply: Any = await self.redis.xread(
                {events_key(request_id): after}, block=max(1, int(block * 1000))
            )
            for _stream, entries in reply or []:
                for stream_id, data in entries:
                    after = stream_id
                    yield data
                    if Status(data["status"]).is_terminal and await self._is_final(
                        request_id, data["attempt"]
                    ):
                        return

    async def _is_final(self, request_id: str, attempt: str) -> bool:
        """A terminal event is the end unless the request was run again since (a retry)."""
        reply: Any = await self.redis.hmget(record_key(request_id), ["status", "attempt"])
        status, current = reply
        return status is None or (Status(status).is_terminal and current == attempt)

    async def wait_terminal(self, request_id: str, timeout_s: float) -> Status | None:
        last = None
        async for data in self.events(request_id, timeout_s):
            last = Status(data["status"])
        return last if last is not None and last.is_terminal else None

    async def stream(self, request_id: str) -> AsyncIterator[tuple[str, Any]]:
        """("chunk", raw JSON text) for each streamed item, then ("end", final status)."""
        cursors: Any = {chunks_key(request_id): "0-0", events_key(request_id): "0-0"}
        while True:
            reply: Any = await self.redis.xread(cursors, block=int(_BLOCK_S * 1000))
            final = None
            # Chunks are written before the terminal event, so one read sees all of them.
            for stream, entries in sorted(
                reply or [], key=lambda r: r[0] != chunks_key(request_id)
            ):
                for stream_id, data in entries:
                    cursors[stream] = stream_id
                    if stream == chunks_key(request_id):
                        yield "chunk", data["data"]
                    elif Status(data["status"]).is_terminal and await self._is_final(
                        request_id, data["attempt"]
                    ):
                        final = Status(data["status"])
            if final is not None:
                yield "end", final
                return
