"""A decorated job: still callable locally, plus async_run_remote / run_remote and their
``async def`` forms (asubmit / arun_remote)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobcord.scheduler.bounds import check_idempotency_key
from jobcord.scheduler.context import JobContext, current_job
from jobcord.scheduler.jobspec import JobSpec
from jobcord.storage.requests import Submission

from .async_client import async_twin
from .client import Client, default_client
from .handle import RequestHandle
from .message_calls import MessageKey, message_call_key
from .options import SubmitOptions

if TYPE_CHECKING:
    from .app import App

__all__ = ["RemoteFunction"]


@dataclass(frozen=True)
class _Call:
    """One call, checked and ready to submit (its key drawn, its input validated)."""

    input_json: dict[str, Any]
    opts: SubmitOptions
    #: Its key was derived (a job's child, a dramatiq message's call): a request found by it
    #: that ended unsuccessfully is run again (the parent or message is being retried).
    rerun_found: bool


class RemoteFunction:
    def __init__(self, app: App, spec: JobSpec) -> None:
        self._app = app
        self.spec = spec
        functools.update_wrapper(self, spec.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the function runs it here, in this process (handy in tests)."""
        return self.spec.fn(*args, **kwargs)

    def _client(self) -> Client:
        from .local import local_client  # noqa: PLC0415 (local imports this module)

        return local_client() or self._app.client or default_client()

    def async_run_remote(
        self,
        *args: Any,
        idempotency_key: str | None = None,
        webhook_endpoint: str | None = None,
        priority: int | None = None,
        max_time_in_queue_seconds: float | None = None,
        metadata: dict[str, Any] | None = None,
        delay_seconds: float | None = None,
        eta: datetime | float | None = None,
        retries: int | None = None,
        on_complete: Any = None,
        **kwargs: Any,
    ) -> RequestHandle:
        """Validate the input, queue the request and return its handle at once.

        ``delay_seconds`` or ``eta`` (an aware datetime or epoch seconds) hold it back until
        then; its ``max_time_in_queue_seconds`` counts from that moment. ``retries``
        overrides the job's own for this call. ``on_complete``: a dramatiq actor (or
        ``actor.message(...)``) that gets the finished request on the team's broker, instead
        of a webhook (``jobcord.dramatiq``).

        Called inside a running job, the request becomes that job's child: it is linked to
        the parent, canceled with it, and gets a deterministic idempotency key (the parent's
        id and the call's position), so a retried parent gets its finished children back
        instead of running them again (a child that failed is run again). Called inside a
        dramatiq actor (with jobcord's middleware), the key comes from the message id and the
        call's position the same way."""
        options = {
            "idempotency_key": idempotency_key,
            "webhook_endpoint": webhook_endpoint,
            "priority": priority,
            "max_time_in_queue_seconds": max_time_in_queue_seconds,
            "metadata": metadata,
            "delay_seconds": delay_seconds,
            "eta": eta,
            "retries": retries,
            "on_complete": on_complete,
        }
        call = self._prepare(args, kwargs, options)
        client = self._client()
        submission = client.submit(self.spec, call.input_json, call.opts)
        if not submission.created and call.rerun_found:
            client.rerun_unless_succeeded(submission.request_id)
        return self._handle(submission, client)

    async def asubmit(self, *args: Any, **kwargs: Any) -> RequestHandle:
        """``async_run_remote`` for ``async def`` code, with the same arguments: the submit
        is one command on redis.asyncio, on this event loop (no thread; see
        ``jobcord.producers.async_client``)."""
        options = {name: kwargs.pop(name) for name in _OPTIONS if name in kwargs}
        # Drawn before the first await: calls started together (asyncio.gather) get their
        # derived keys in the order they appear in the code, on every attempt.
        call = self._prepare(args, kwargs, options)
        client = self._client()
        twin = async_twin(client)
        if twin is None:  # an HTTP or in-process client: its sync calls, on a thread
            submission = await asyncio.to_thread(
                client.submit, self.spec, call.input_json, call.opts
            )
            if not submission.created and call.rerun_found:
                await asyncio.to_thread(client.rerun_unless_succeeded, submission.request_id)
        else:
            submission = await twin.submit(self.spec, call.input_json, call.opts)
            if not submission.created and call.rerun_found:
                await twin.rerun_unless_succeeded(submission.request_id)
        return self._handle(submission, client)

    def run_remote(self, *args: Any, **kwargs: Any) -> Any:
        """The sync facade: queue, wait, and return the output or raise what happened.

        Takes ``async_run_remote``'s arguments, and ``timeout``: the most seconds to wait
        for the result once the request is queued (default: as long as it takes); past it
        ``ResultTimeout`` is raised and the request goes on (its id is on the error). A job
        with an input parameter named ``timeout`` keeps it as its input: give the wait as
        ``result_timeout_s`` then (accepted for every job)."""
        wait_s = self._wait_limit(kwargs)
        return self.async_run_remote(*args, **kwargs).result(timeout=wait_s)

    async def arun_remote(self, *args: Any, **kwargs: Any) -> Any:
        """``run_remote`` for ``async def`` code (the same arguments, ``timeout`` too): the
        submit and the wait are on redis.asyncio, so any number of calls can wait at once on
        one event loop (``asyncio.gather``), each within its own timeout."""
        wait_s = self._wait_limit(kwargs)
        handle = await self.asubmit(*args, **kwargs)
        return await handle.aresult(timeout=wait_s)

    def handle(self, request_id: str) -> RequestHandle:
        """A handle for an earlier request of this job (its output is decoded as typed)."""
        return RequestHandle(request_id, self._client(), self.spec.signature)

    # -- shared by the sync and async paths -------------------------------------------------
    def _prepare(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> _Call:
        """The call's options (its idempotency key checked, or derived from the running job
        or dramatiq message) and its validated input."""
        parent = current_job()
        key = options.pop("idempotency_key", None)
        check_idempotency_key(key)  # "jobcord-..." is refused unless ours
        if key is None:
            key = _derived_key(parent)
        opts = SubmitOptions(
            **options,
            idempotency_key=key,
            parent_id=parent.request_id if parent is not None else None,
        )
        input_json = self.spec.signature.bind(args, kwargs)
        return _Call(input_json, opts, parent is not None or isinstance(key, MessageKey))

    def _handle(self, submission: Submission, client: Client) -> RequestHandle:
        return RequestHandle(
            submission.request_id, client, self.spec.signature, created=submission.created
        )

    def _wait_limit(self, kwargs: dict[str, Any]) -> float | None:
        """Take the wait's limit out of a call's keywords: ``result_timeout_s``, or ``timeout``
        unless the job has an input of that name (then it stays the job's)."""
        inputs = self.spec.signature.parameters
        given = [n for n in ("timeout", "result_timeout_s") if n in kwargs and n not in inputs]
        if len(given) > 1:
            raise TypeError("give either timeout or result_timeout_s, not both")
        wait_s = kwargs.pop(given[0]) if given else None
        if wait_s is not None and (
            isinstance(wait_s, bool)
            or not isinstance(wait_s, int | float)
            or not (math.isfinite(wait_s) and wait_s >= 0)
        ):
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {wait_s!r}")
        return wait_s


#: The keyword arguments that are options of a call, not its input.
_OPTIONS = frozenset(
    name
    for name, param in inspect.signature(RemoteFunction.async_run_remote).parameters.items()
    if param.kind is inspect.Parameter.KEYWORD_ONLY
)


def _derived_key(parent: JobContext | None) -> str | None:
    """A running job's next child key, a dramatiq actor's next message key, or None."""
    if parent is not None:
        return parent.child_call_key()
    return message_call_key()
