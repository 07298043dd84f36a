"""Async waits on a request's Redis streams (XREAD BLOCK): the gateway never polls.

The Follower has its own pool, sized for every wait the gateway admits (``WaitLimits``), and
blocking rather than failing should it ever be short: a wait never takes a connection from a
submission, and never fails for want of one. Replies are bytes: a streamed chunk is relayed
as what it is (it need not be UTF-8); status events are decoded here."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from jobcord.storage.connection import BLOCKING_READ_TIMEOUT_S, connect_async_url
from jobcord.storage.keys import chunks_key, events_key, record_key
from jobcord.storage.requests import FIRST_EVENT_ID, first_queued_event, is_legacy_first_event
from jobcord.storage.statuses import Status

__all__ = ["Follower"]

_BLOCK_S = 5.0
#: How long a wait may queue for a pooled connection before the pool gives up.
_POOL_WAIT_S = 30.0


def _text(data: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in data.items()}


class Follower:
    def __init__(self, url: str, *, max_connections: int) -> None:
        # A Sentinel pool does not wait for a free connection (admission still bounds the
        # waits); the others wait up to _POOL_WAIT_S.
        self.redis = connect_async_url(
            url,
            pool_wait_s=_POOL_WAIT_S,
            max_connections=max_connections,
            socket_timeout=BLOCKING_READ_TIMEOUT_S,
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()

    async def events(
        self, request_id: str, timeout_s: float | None = None, *, final_check: bool = True
    ) -> AsyncIterator[dict[str, str]]:
        """Every status event, in order, until a terminal one (or the timeout). Without
        ``final_check`` the first terminal event ends it, and the first QUEUED is not made:
        for a caller that reads the record next anyway (and sees a rerun there)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        after = FIRST_EVENT_ID
        if final_check:
            created_at: Any = await self.redis.hget(record_key(request_id), "created_at")
            if created_at is not None:  # the first QUEUED is not stored (RequestStore.events)
                yield dict(first_queued_event(float(created_at)).fields)
        while True:
            block = _BLOCK_S if deadline is None else min(_BLOCK_S, deadline - time.monotonic())
            if block <= 0:
                return
            reply: Any = await self.redis.xread(
                {events_key(request_id): after}, block=max(1, int(block * 1000))
            )
            for _stream, entries in reply or []:
                for stream_id, raw in entries:
                    after = stream_id
                    data = _text(raw)
                    if is_legacy_first_event(data):
                        continue
                    yield data
                    if Status(data["status"]).is_terminal and (
                        not final_check or await self._is_final(request_id, data["attempt"])
                    ):
                        return

    async def _is_final(self, request_id: str, attempt: str) -> bool:
        """A terminal event is the end unless the request was run again since (a retry)."""
        reply: Any = await self.redis.hmget(record_key(request_id), ["status", "attempt"])
        status, current = reply
        if status is None:
            return True
        return Status(status.decode()).is_terminal and current.decode() == attempt

    async def wait_terminal(
        self, request_id: str, timeout_s: float, *, final_check: bool = True
    ) -> Status | None:
        last = None
        async for data in self.events(request_id, timeout_s, final_check=final_check):
            last = Status(data["status"])
        return last if last is not None and last.is_terminal else None

    async def stream(self, request_id: str) -> AsyncIterator[tuple[str, Any]]:
        """("chunk", bytes as the consumer encoded them) for each streamed item, then
        ("end", final status)."""
        chunks = chunks_key(request_id).encode()
        cursors: Any = {chunks: "0-0", events_key(request_id).encode(): "0-0"}
        while True:
            reply: Any = await self.redis.xread(cursors, block=int(_BLOCK_S * 1000))
            final = None
            # Chunks are written before the terminal event, so one read sees all of them.
            for stream, entries in sorted(reply or [], key=lambda r: r[0] != chunks):
                for stream_id, raw in entries:
                    cursors[stream] = stream_id
                    if stream == chunks:
                        yield "chunk", raw[b"data"]
                        continue
                    data = _text(raw)
                    if Status(data["status"]).is_terminal and await self._is_final(
                        request_id, data["attempt"]
                    ):
                        final = Status(data["status"])
            if final is not None:
                yield "end", final
                return
