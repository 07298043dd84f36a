"""Bounded waits: open event streams and waiting calls, per API key and in all (429 past them).

A wait (``GET /v1/requests/{id}/events``, a ``run_remote`` that waits, a cord) holds a place
from before anything is queued until its response ends. The places are counted in this API
process, and the Follower's Redis pool has a connection for each, so no number of waiting
callers can take the connections that submissions and reads need, nor fail after queueing.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import contextmanager
from typing import Any

from starlette.responses import StreamingResponse

from jobcord.storage.errors import TooManyRequests

__all__ = ["WaitLimits", "HeldStream"]

#: Seconds a refused caller is asked to wait before trying again.
_RETRY_AFTER_S = 1.0


class WaitLimits:
    def __init__(self, *, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = per_key
        self._open = 0
        self._by_key: dict[str, int] = {}
        self._lock = threading.Lock()  # the event loop and the threadpool both take places

    @property
    def open(self) -> int:
        return self._open

    def acquire(self, key_id: str) -> Callable[[], None]:
        """Take a place for ``key_id`` or raise TooManyRequests; returns its release, which
        may be called more than once."""
        with self._lock:
            mine = self._by_key.get(key_id, 0)
            if mine >= self.per_key:
                raise TooManyRequests(
                    f"API key {key_id} already has {mine} open event streams or waiting calls, "
                    f"its limit (JOBCORD_API_MAX_WAITS_PER_KEY) is {self.per_key}; close one, "
                    "or poll GET /v1/requests/{id}",
                    retry_after_s=_RETRY_AFTER_S,
                )
            if self._open >= self.total:
                raise TooManyRequests(
                    f"this API has {self._open} open event streams and waiting calls, its "
                    f"limit (JOBCORD_API_MAX_WAITS) is {self.total}; retry later, or poll "
                    "GET /v1/requests/{id}",
                    retry_after_s=_RETRY_AFTER_S,
                )
            self._open += 1
            self._by_key[key_id] = mine + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._open -= 1
                left = self._by_key[key_id] - 1
                if left:
                    self._by_key[key_id] = left
                else:
                    del self._by_key[key_id]

        return release

    @contextmanager
    def hold(self, key_id: str) -> Any:
        release = self.acquire(key_id)
        try:
            yield
        finally:
            release()


class HeldStream(StreamingResponse):
    """A streaming response that gives its place back when it ends, however it ends (also
    when the caller left before the first byte, when the body's own cleanup never runs)."""

    def __init__(
        self, content: AsyncIterator[str], release: Callable[[], None], **kwargs: Any
    ) -> None:
        self._release = release
        try:
            super().__init__(content, **kwargs)
        except BaseException:
            release()
            raise

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
