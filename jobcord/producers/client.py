"""The client that talks to Redis directly (same network as the queue).

Created lazily on first use, so importing an app module reads no settings and opens no
connection. An HTTP client for remote gateways comes with the gateway.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from typing import Any, Protocol

import redis
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
)

from jobcord.scheduler.jobspec import JobSpec
from jobcord.scheduler.payloads import MSGPACK_TYPE
from jobcord.scheduler.webhooks.targets import WebhookTargetRefused, parse_networks, resolve_target
from jobcord.storage.connection import connect
from jobcord.storage.errors import RedisUnavailable, refuses_writes
from jobcord.storage.records import RequestRecord
from jobcord.storage.registry import ConsumerRegistry, unserved_reason
from jobcord.storage.requests import InlineOutput, NewRequest, RequestStore, Submission
from jobcord.storage.results import ResultStore, input_key, open_result_store, with_urls
from jobcord.storage.settings import Settings, load_settings
from jobcord.storage.statuses import Status
from jobcord.storage.webhook_secrets import WebhookSecrets

from .errors import ResultTimeout, TooLarge
from .options import SubmitOptions, delay_until

__all__ = [
    "Client",
    "SubmitOptions",
    "delay_until",
    "RedisClient",
    "default_client",
    "set_default_client",
]


#: How long a cancel waits for a running request's worker to stop it (its kill grace is 3 s
#: by default), so that the caller hears the status the cancel led to.
CANCEL_WAIT_S = 5.0
#: The most an HTTP caller may ask a cancel to wait.
MAX_CANCEL_WAIT_S = 60.0


class Client(Protocol):
    """What handles and decorated functions need from a client: Redis or HTTP."""

    def submit(
        self, spec: JobSpec, input_json: dict[str, Any], opts: SubmitOptions
    ) -> Submission: ...

    def get(self, request_id: str) -> RequestRecord: ...

    def cancel(self, request_id: str, wait_s: float = CANCEL_WAIT_S) -> Status: ...

    def wait(self, request_id: str, timeout_s: float | None) -> RequestRecord: ...

    def fetch(self, record: RequestRecord) -> bytes: ...

    def rerun_unless_succeeded(self, request_id: str) -> None: ...


class RedisClient:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.redis = connect(self.settings)
        self.store = RequestStore(self.redis, self.settings)
        self._results: ResultStore | None = None

    @property
    def results(self) -> ResultStore:
        if self._results is None:  # boto3 only when a result is actually read
            self._results = open_result_store(self.settings)
        return self._results

    def submit(self, spec: JobSpec, input_json: dict[str, Any], opts: SubmitOptions) -> Submission:
        request = self.request(spec, input_json, opts)
        try:
            return self.store.submit(request)
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    def request(self, spec: JobSpec, input_json: dict[str, Any], opts: SubmitOptions) -> NewRequest:
        """The submission of ``input_json`` to ``spec``, checked (sizes, webhook target and
        secret, timeout) and ready to send; a large binary input is stored apart first."""
        if opts.metadata is not None:
            size = len(json.dumps(opts.metadata).encode())
            TooLarge.check("metadata", size, self.settings.max_metadata_bytes, "METADATA")
        if opts.webhook_endpoint is not None:
            self._check_webhook(spec.app, opts.webhook_endpoint)
        timeout_s = spec.timeout_s
        if opts.timeout_seconds is not None:
            if spec.timeout_s is not None and opts.timeout_seconds > spec.timeout_s:
                raise ValueError(
                    f"timeout_seconds {opts.timeout_seconds} exceeds the job's own {spec.timeout_s}"
                )
            timeout_s = opts.timeout_seconds
        request = spec.new_request(
            input_json,
            priority=1 if opts.priority is None else opts.priority,
            timeout_s=timeout_s,
            max_retries=spec.retry.retries if opts.retries is None else opts.retries,
            max_queue_s=opts.max_time_in_queue_seconds,
            delay_s=opts.delay_seconds,
            start_at=opts.start_at(),  # an eta: on Redis's clock, not this host's
            idempotency_key=opts.idempotency_key,
            webhook_endpoint=opts.webhook_endpoint,
            on_complete=opts.on_complete.model_dump(mode="json") if opts.on_complete else None,
            metadata=opts.metadata,
            max_in_flight=self.settings.in_flight_cap(spec.app),
            parent_id=opts.parent_id,
        )
        # JSON inputs live on the record, in Redis's memory: bounded. Binary ones (bytes,
        # arrays) are bounded by the body limit over HTTP and leave Redis when large.
        TooLarge.check("input", len(request.input_json), self.settings.max_input_bytes, "INPUT")
        if request.input_bin and len(request.input_bin) > self.settings.inline_input_max_bytes:
            # Large binary inputs go to the result store (S3), not Redis's memory.
            key = input_key(spec.app, spec.name, request.request_id)
            self.results.put_bytes(key, request.input_bin, MSGPACK_TYPE)
            request = replace(request, input_bin=None, input_ref=key)
        return request

    def _check_webhook(self, app: str, url: str) -> None:
        """Refuse, before queueing, a webhook that could never be delivered or is not allowed."""
        resolve_target(url, parse_networks(self.settings.webhook_allowed_networks))
        if not WebhookSecrets(self.redis, self.settings.webhook_secret).active(app):
            raise WebhookTargetRefused(
                f"no webhook signing secret for app {app!r}: set JOBCORD_WEBHOOK_SECRET or "
                "add one with 'jobcord webhook-secrets add'"
            )

    def get(self, request_id: str) -> RequestRecord:
        """The record, with fresh download URLs (presigned on S3) for stored results."""
        record = self.store.get(request_id)
        if record.child_count:  # most requests have none: no extra round trip for them
            record.children = self.store.children_tree(request_id)
        if record.status is Status.QUEUED and record.retry_at is None:
            record.waiting_reason = unserved_reason(record, ConsumerRegistry(self.redis).live())
        if record.result is None and not record.files:
            return record  # no result store (nor boto3) needed
        return with_urls(record, self.results)

    def cancel(self, request_id: str, wait_s: float = CANCEL_WAIT_S) -> Status:
        """Cancel, and return the status it led to: a queued request is CANCELED now; a
        running one is stopped by its worker, waited for up to ``wait_s`` (still
        IN_PROGRESS if it has not ended by then; SUCCEEDED etc. if it ended first)."""
        status = self.store.cancel(request_id)
        if status is not Status.IN_PROGRESS or wait_s <= 0:
            return status
        try:
            return self._wait(request_id, wait_s, inline_output=False).status  # type: ignore[union-attr]
        except ResultTimeout:
            return Status.IN_PROGRESS

    def wait(self, request_id: str, timeout_s: float | None) -> RequestRecord:
        """Block on the request's event stream (no polling) until it is terminal; rides out
        Redis restarts within the timeout."""
        record = self._wait(request_id, timeout_s, inline_output=False)
        assert isinstance(record, RequestRecord)
        return record

    def wait_output(self, request_id: str, timeout_s: float | None) -> RequestRecord | str:
        """:meth:`wait`, except that a success's small output comes back as its JSON text,
        straight from the request's terminal event (one round trip fewer)."""
        got = self._wait(request_id, timeout_s, inline_output=True)
        return got.json if isinstance(got, InlineOutput) else got

    def _wait(
        self,
        request_id: str,
        timeout_s: float | None,
        *,
        inline_output: bool,
    ) -> RequestRecord | InlineOutput:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def once() -> tuple[RequestRecord | InlineOutput | None, Status]:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            return self.store.wait_terminal(
                request_id, timeout_s=remaining, inline_output=inline_output
            )

        try:
            got, last = once()
        except (redis.ConnectionError, redis.TimeoutError):  # tenacity only after an outage
            for attempt in Retrying(
                retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)),
                wait=wait_exponential(multiplier=0.1, max=2),
                stop=stop_after_delay(timeout_s) if timeout_s is not None else stop_never,
                reraise=True,
            ):
                with attempt:
                    got, last = once()
        if got is None:
            raise ResultTimeout(request_id, timeout_s, last)
        return got

    def rerun_unless_succeeded(self, request_id: str) -> None:
        """Run an ended, unsuccessful request again (same id): a retried parent's child."""
        record = self.store.get(request_id)
        if record.status.is_terminal and record.status is not Status.SUCCEEDED:
            self.rerun(request_id, record.app)

    def rerun(self, request_id: str, app: str | None = None) -> int:
        """Run an ended, unsuccessful request again, admitted like a new one: refused
        (TooManyRequests) while its app is at its in-flight cap. Returns the attempt."""
        app = app or self.store.get(request_id).app
        return self.store.rerun(request_id, max_in_flight=self.settings.in_flight_cap(app))

    def fetch(self, record: RequestRecord) -> bytes:
        """The stored output object of a record (large JSON or bytes)."""
        if record.result is None:
            raise ValueError(f"request {record.request_id} has no stored output")
        return self.results.get_bytes(record.result.key)


_default: Client | None = None
_lock = threading.Lock()


def default_client() -> Client:
    global _default
    with _lock:
        if _default is None:
            _default = RedisClient()
        return _default


def set_default_client(client: Client | None) -> None:
    """Point every App without its own client at ``client`` (tests, embedding)."""
    global _default
    with _lock:
        _default = client


def _unavailable(exc: redis.RedisError) -> Exception:
    """A submit Redis refused, as jobcord's own error. An unreachable Redis stays redis-py's
    ConnectionError / TimeoutError, which callers already catch to retry (the submit may or
    may not have been queued: retry with the same idempotency key)."""
    if refuses_writes(exc):
        return RedisUnavailable(
            f"Redis refused the submit, nothing was queued: {exc}. Try again later (with the "
            "same idempotency key, it can never run twice)."
        )
    return exc
