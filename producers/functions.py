"""A decorated job: still callable locally, plus async_run_remote / run_remote."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scheduler.jobspec import JobSpec

from .client import Client, SubmitOptions, default_client, delay_until
from .handle import RequestHandle

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
        return self._app.client or default_client()

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
        **kwargs: Any,
    ) -> RequestHandle:
        """Validate the input, queue the request and return its handle at once.

        ``delay_seconds`` or ``eta`` (an aware datetime or epoch seconds) hold it back until
        then; its ``max_time_in_queue_seconds`` counts from that moment."""
        if eta is not None:
            delay_seconds = delay_until(eta, delay_seconds)
        opts = SubmitOptions(
            idempotency_key=idempotency_key,
            webhook_endpoint=webhook_endpoint,
            priority=priority,
            max_time_in_queue_seconds=max_time_in_queue_seconds,
            metadata=metadata,
            delay_seconds=delay_seconds,
        )
        input_json = self.spec.signature.bind(args, kwargs)
        client = self._client()
        submission = client.submit(self.spec, input_json, opts)
        return RequestHandle(
            submission.request_id, client, self.spec.signature, created=submission.created
        )

    def run_remote(self, *args: Any, **kwargs: Any) -> Any:
        """The sync facade: queue, wait, and return the output or raise what happened."""
        return self.async_run_remote(*args, **kwargs).result()

    def handle(self, request_id: str) -> RequestHandle:
        """A handle for an earlier request of this job (its output is decoded as typed)."""
        return RequestHandle(request_id, self._client(), self.spec.signature)
