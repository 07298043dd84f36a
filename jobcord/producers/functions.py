"""A decorated job: still callable locally, plus async_run_remote / run_remote."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobcord.scheduler.bounds import check_idempotency_key
from jobcord.scheduler.context import JobContext, current_job
from jobcord.scheduler.jobspec import JobSpec

from .client import Client, default_client
from .handle import RequestHandle
from .message_calls import MessageKey, message_call_key
from .options import SubmitOptions

if TYPE_CHECKING:
    from .app import App

__all__ = ["RemoteFunction"]


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
        parent = current_job()
        check_idempotency_key(idempotency_key)  # "jobcord-..." is refused unless ours
        if idempotency_key is None:
            idempotency_key = _derived_key(parent)
        opts = SubmitOptions(
            idempotency_key=idempotency_key,
            webhook_endpoint=webhook_endpoint,
            priority=priority,
            max_time_in_queue_seconds=max_time_in_queue_seconds,
            metadata=metadata,
            delay_seconds=delay_seconds,
            eta=eta,
            retries=retries,
            on_complete=on_complete,
            parent_id=parent.request_id if parent is not None else None,
        )
        input_json = self.spec.signature.bind(args, kwargs)
        client = self._client()
        submission = client.submit(self.spec, input_json, opts)
        if not submission.created and (
            parent is not None or isinstance(idempotency_key, MessageKey)
        ):
            client.rerun_unless_succeeded(submission.request_id)
        return RequestHandle(
            submission.request_id, client, self.spec.signature, created=submission.created
        )

    def run_remote(self, *args: Any, **kwargs: Any) -> Any:
        """The sync facade: queue, wait, and return the output or raise what happened."""
        return self.async_run_remote(*args, **kwargs).result()

    async def arun_remote(self, *args: Any, **kwargs: Any) -> Any:
        """``run_remote`` for ``async def`` code: many calls can wait concurrently
        (``asyncio.gather``), each on its own thread, leaving the event loop free."""
        parent = current_job()
        check_idempotency_key(kwargs.get("idempotency_key"))
        if kwargs.get("idempotency_key") is None:
            # Drawn before the first await: calls started together (asyncio.gather) get
            # their keys in the order they appear in the code, on every attempt.
            kwargs["idempotency_key"] = _derived_key(parent)
        handle = await asyncio.to_thread(self.async_run_remote, *args, **kwargs)
        return await handle.aresult()

    def handle(self, request_id: str) -> RequestHandle:
        """A handle for an earlier request of this job (its output is decoded as typed)."""
        return RequestHandle(request_id, self._client(), self.spec.signature)


def _derived_key(parent: JobContext | None) -> str | None:
    """A running job's next child key, a dramatiq actor's next message key, or None."""
    if parent is not None:
        return parent.child_call_key()
    return message_call_key()
