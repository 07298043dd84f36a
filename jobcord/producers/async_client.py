"""Submit and wait from ``async def`` code on redis.asyncio, on the caller's own event loop.

``await f.asubmit(...)``, ``await f.arun_remote(...)``, ``await handle.aresult()``,
``handle.astatus()`` and ``handle.acancel()`` go through the :class:`AsyncRedisClient` of the
function's :class:`~jobcord.producers.client.RedisClient` (one each, made on first use): the
submit script runs as one async command, and a wait is an XREAD BLOCK on the request's event
stream, so a thousand callers on one loop each end within their own timeout, and none takes
a thread. Only what is blocking by nature goes to a thread: a webhook target's DNS check and
a large binary input's upload before a submit, a stored output's download after a wait.
Other clients (``HttpClient``, ``run_local``) run their sync calls on a thread.

redis.asyncio connections belong to the loop that opened them, so each event loop gets a
pool of its own; a closed loop's pool is dropped the next time one is made. ``await
jobcord.aclose()`` closes the running loop's pools (the end of a FastAPI lifespan).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import Any

import redis
import tenacity

from jobcord.scheduler.jobspec import JobSpec
from jobcord.scheduler.payloads import is_binary
from jobcord.storage.async_requests import AsyncRequestStore
from jobcord.storage.connection import BLOCKING_READ_TIMEOUT_S, connect_async_url, redis_url
from jobcord.storage.records import RequestRecord
from jobcord.storage.requests import InlineOutput, Submission
from jobcord.storage.statuses import Status

from .client import CANCEL_WAIT_S, RedisClient, _unavailable
from .errors import ResultTimeout
from .options import SubmitOptions

__all__ = ["AsyncRedisClient", "aclose", "async_twin"]

#: How long a call may queue for a pooled connection (past ``JOBCORD_REDIS_MAX_CONNECTIONS``
#: at once on one loop) before the pool gives up with redis-py's ConnectionError.
_POOL_WAIT_S = 30.0
_OUTAGE = (redis.ConnectionError, redis.TimeoutError)


class AsyncRedisClient:
    """The async calls of one :class:`RedisClient` (its settings, its request checks, its
    sync store for what the record holds), on each event loop's own connections."""

    def __init__(self, client: RedisClient) -> None:
        # Weak: the registry of twins is keyed by the client (it must not keep it alive).
        self._owner = weakref.ref(client)
        self._url: str | None = None
        self._stores: dict[asyncio.AbstractEventLoop, AsyncRequestStore] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> RedisClient:
        client = self._owner()
        if client is None:
            raise RuntimeError("the RedisClient of this async client is gone")
        return client

    def store(self) -> AsyncRequestStore:
        """The running loop's store (its connections are made on first use)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            store = self._stores.get(loop)
            if store is None:
                for closed in [other for other in self._stores if other.is_closed()]:
                    del self._stores[closed]  # their sockets close as they are collected
                store = AsyncRequestStore(self._connect(), self.client.store)
                self._stores[loop] = store
        return store

    def _connect(self) -> Any:
        settings = self.client.settings
        if self._url is None:
            self._url = redis_url(settings)  # the sync client found (or started) it already
        return connect_async_url(
            self._url,
            pool_wait_s=_POOL_WAIT_S,
            max_connections=settings.redis_max_connections,
            decode_responses=True,
            health_check_interval=30,
            socket_timeout=BLOCKING_READ_TIMEOUT_S,  # longer than any blocking read
            socket_connect_timeout=5,
        )

    async def aclose(self) -> None:
        """Close the running loop's connections (a later call opens new ones)."""
        with self._lock:
            store = self._stores.pop(asyncio.get_running_loop(), None)
        if store is not None:
            await store.client.aclose()
            await store.client.connection_pool.disconnect()

    # -- the calls ---------------------------------------------------------------------------
    async def submit(
        self, spec: JobSpec, input_json: dict[str, Any], opts: SubmitOptions
    ) -> Submission:
        """:meth:`RedisClient.submit`, the same checks and the same errors."""
        client = self.client
        if opts.webhook_endpoint is not None or is_binary(input_json):
            # The webhook target's DNS and secret, a large binary input's upload: blocking.
            request = await asyncio.to_thread(client.request, spec, input_json, opts)
        else:
            request = client.request(spec, input_json, opts)  # CPU only: sizes, the record
        try:
            return await self.store().submit(request)
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    async def get(self, request_id: str) -> RequestRecord:
        """:meth:`RedisClient.get`: a record with children, stored results (URLs to sign) or
        a wait to explain is completed by the sync client, on a thread."""
        record = await self.store().get(request_id)
        queued = record.status is Status.QUEUED and record.retry_at is None
        if record.child_count or record.result is not None or record.files or queued:
            return await asyncio.to_thread(self.client.get, request_id)
        return record

    async def cancel(self, request_id: str, wait_s: float = CANCEL_WAIT_S) -> Status:
        """:meth:`RedisClient.cancel`: the status the cancel led to."""
        status = await self.store().cancel(request_id)
        if status is not Status.IN_PROGRESS or wait_s <= 0:
            return status
        try:
            got = await self._wait(request_id, wait_s, inline_output=False)
        except ResultTimeout:
            return Status.IN_PROGRESS
        assert isinstance(got, RequestRecord)
        return got.status

    async def wait(self, request_id: str, timeout_s: float | None) -> RequestRecord:
        got = await self._wait(request_id, timeout_s, inline_output=False)
        assert isinstance(got, RequestRecord)
        return got

    async def wait_output(self, request_id: str, timeout_s: float | None) -> RequestRecord | str:
        """:meth:`wait`, except that a success's small output comes back as its JSON text."""
        got = await self._wait(request_id, timeout_s, inline_output=True)
        return got.json if isinstance(got, InlineOutput) else got

    async def _wait(
        self, request_id: str, timeout_s: float | None, *, inline_output: bool
    ) -> RequestRecord | InlineOutput:
        """Until terminal, or ResultTimeout after ``timeout_s``; a Redis outage within the
        timeout is ridden out (the same backoff as the sync wait)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        store = self.store()

        async def once() -> tuple[RequestRecord | InlineOutput | None, Status]:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return await store.wait_terminal(
                request_id, timeout_s=left, inline_output=inline_output
            )

        try:
            got, last = await once()
        except _OUTAGE:
            try:
                async for attempt in tenacity.AsyncRetrying(
                    retry=tenacity.retry_if_exception_type(_OUTAGE),
                    stop=_stop_after(timeout_s),
                    wait=tenacity.wait_exponential(multiplier=0.1, max=2),
                    reraise=True,
                ):
                    with attempt:
                        got, last = await once()
            except _OUTAGE as exc:  # still down at the deadline: a timeout, as on the sync path
                raise ResultTimeout(request_id, timeout_s, None) from exc
        if got is None:
            raise ResultTimeout(request_id, timeout_s, last)
        return got

    async def rerun_unless_succeeded(self, request_id: str) -> None:
        """Run an ended, unsuccessful request again (a retried parent's child, found again
        by its derived key). Rare: the rerun itself is the sync client's, on a thread."""
        record = await self.store().get(request_id)
        if record.status.is_terminal and record.status is not Status.SUCCEEDED:
            await asyncio.to_thread(self.client.rerun, request_id, record.app)


def _stop_after(timeout_s: float | None) -> tenacity.stop.stop_base:
    return tenacity.stop_never if timeout_s is None else tenacity.stop_after_delay(timeout_s)


_twins: weakref.WeakKeyDictionary[RedisClient, AsyncRedisClient] = weakref.WeakKeyDictionary()
_twins_lock = threading.Lock()


def async_twin(client: object) -> AsyncRedisClient | None:
    """The async client of a RedisClient (made on first use); None for any other client."""
    if not isinstance(client, RedisClient):
        return None
    with _twins_lock:
        twin = _twins.get(client)
        if twin is None:
            twin = _twins[client] = AsyncRedisClient(client)
    return twin


async def aclose() -> None:
    """Close the Redis connections that jobcord's async calls opened on the running event
    loop (say at the end of a FastAPI lifespan); calls made later open new ones."""
    with _twins_lock:
        twins = list(_twins.values())
    for twin in twins:
        await twin.aclose()
