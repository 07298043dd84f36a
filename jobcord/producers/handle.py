"""RequestHandle: follow one request (status, result, cancel)."""

from __future__ import annotations

import asyncio
import json
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from jobcord.scheduler.context import current_job
from jobcord.scheduler.outputs import decode_output
from jobcord.scheduler.signatures import JobSignature
from jobcord.storage.records import RequestRecord
from jobcord.storage.statuses import Status

from .async_client import async_twin
from .client import CANCEL_WAIT_S
from .errors import remote_error

if TYPE_CHECKING:
    from .client import Client

__all__ = ["RequestHandle"]


class RequestHandle:
    def __init__(
        self,
        request_id: str,
        client: Client,
        signature: JobSignature | None = None,
        *,
        created: bool = True,
    ) -> None:
        self.request_id = request_id
        #: False when an idempotency key matched an earlier request with the same input.
        self.created = created
        self._client = client
        self._signature = signature

    def __repr__(self) -> str:
        return f"RequestHandle({self.request_id!r})"

    def status(self) -> RequestRecord:
        """The request now: status, times, attempts, error, result references."""
        return self._client.get(self.request_id)

    def wait(self, timeout: float | None = None) -> RequestRecord:
        """Block until the request is terminal (raises ResultTimeout after ``timeout`` s)."""
        return self._client.wait(self.request_id, timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The typed output; raises JobFailed/JobTimedOut/JobCanceled/JobExpired otherwise
        (a failed job's own exception class too, where it can be imported here).

        Inside a running job, the wait lends that job's slot to other work meanwhile, so a
        parent never holds the slot its children need."""
        parent = current_job()
        # A client that can hands a small output over from the terminal event itself.
        wait = getattr(self._client, "wait_output", self._client.wait)
        with parent.waiting() if parent is not None else nullcontext():
            got = wait(self.request_id, timeout)
        return self.output_of(got)

    def output_of(self, got: RequestRecord | str) -> Any:
        """The typed output of an ended request (its record, or a success's inline JSON)."""
        if isinstance(got, str):
            raw = json.loads(got)
            if self._signature is None:
                return raw
            return self._signature.output_adapter.validate_python(raw)
        if got.status is not Status.SUCCEEDED:
            raise remote_error(got)
        return decode_output(self._signature, got, self._client.fetch)

    async def aresult(self, timeout: float | None = None) -> Any:
        """``result`` for ``async def`` code: an XREAD BLOCK on redis.asyncio, on this event
        loop (no thread, no polling), so any number of waits end each within its own
        ``timeout`` (ResultTimeout past it; the request goes on). A stored output (S3, the
        local result directory) is read on a thread. Inside a running job, its slot is lent
        meanwhile, as for ``result``."""
        twin = async_twin(self._client)
        if twin is None:  # an HTTP or in-process client: its sync wait, on a thread
            return await asyncio.to_thread(self.result, timeout)
        parent = current_job()
        with parent.waiting() if parent is not None else nullcontext():
            got = await twin.wait_output(self.request_id, timeout)
        if isinstance(got, RequestRecord) and got.status is Status.SUCCEEDED and got.result:
            return await asyncio.to_thread(self.output_of, got)
        return self.output_of(got)

    async def astatus(self) -> RequestRecord:
        """``status`` for ``async def`` code (what only the sync client reads, such as the
        download URLs of a stored result, is read on a thread)."""
        twin = async_twin(self._client)
        if twin is None:
            return await asyncio.to_thread(self.status)
        return await twin.get(self.request_id)

    async def acancel(self, wait: float = CANCEL_WAIT_S) -> Status:
        """``cancel`` for ``async def`` code: the status it led to."""
        twin = async_twin(self._client)
        if twin is None:
            return await asyncio.to_thread(self.cancel, wait)
        return await twin.cancel(self.request_id, wait)

    def tree(self) -> dict[str, Any]:
        """This request and the requests its job made, recursively, with their statuses."""
        record = self.status()
        return {
            "request_id": record.request_id,
            "job": record.job,
            "status": record.status.value,
            "error": record.error.type if record.error else None,
            "children": record.children,
        }

    def cancel(self, wait: float = CANCEL_WAIT_S) -> Status:
        """Cancel, and return the status it led to: a queued request is CANCELED at once; a
        running one is stopped by its worker, waited for up to ``wait`` seconds (IN_PROGRESS
        if it is still stopping; 0: do not wait)."""
        return self._client.cancel(self.request_id, wait)
