"""The client that talks to Redis directly (same network as the queue).

Created lazily on first use, so importing an app module reads no settings and opens no
connection. An HTTP client for remote gateways comes with the gateway.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import redis
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
)

from scheduler.jobspec import JobSpec
from scheduler.payloads import MSGPACK_TYPE
from scheduler.webhooks.targets import WebhookTargetRefused, parse_networks, resolve_target
from storage.connection import connect
from storage.records import RequestRecord
from storage.registry import ConsumerRegistry, unserved_reason
from storage.requests import RequestStore, Submission
from storage.results import ResultStore, open_result_store, result_prefix, with_urls
from storage.settings import Settings, load_settings
from storage.statuses import Status
from storage.webhook_secrets import WebhookSecrets

from .errors import ResultTimeout

__all__ = [
    "Client",
    "SubmitOptions",
    "delay_until",
    "RedisClient",
    "default_client",
    "set_default_client",
]


@dataclass(frozen=True)
class SubmitOptions:
    idempotency_key: str | None = None
    webhook_endpoint: str | None = None
    priority: int | None = None
    max_time_in_queue_seconds: float | None = None
    timeout_seconds: float | None = None
    delay_seconds: float | None = None
    metadata: dict[str, Any] | None = None
    #: Overrides the job's ``retries`` for this request.
    retries: int | None = None
    #: The request whose running job submits this one (set by calls inside a job).
    parent_id: str | None = None

    def __post_init__(self) -> None:
        if self.priority is not None and self.priority not in (0, 1, 2):
            raise ValueError(f"priority must be 0 (highest), 1 or 2, got {self.priority!r}")
        if self.max_time_in_queue_seconds is not None and not (
            0 < self.max_time_in_queue_seconds <= 72 * 3600
        ):
            raise ValueError("max_time_in_queue_seconds must be within (0, 259200]")
        if self.delay_seconds is not None and not 0 <= self.delay_seconds <= 7 * 24 * 3600:
            raise ValueError("delay_seconds must be within [0, 604800]")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if self.idempotency_key is not None and not 0 < len(self.idempotency_key) <= 256:
            raise ValueError("idempotency_key must be 1 to 256 characters")
        if self.retries is not None and not 0 <= self.retries <= 100:
            raise ValueError("retries must be within [0, 100]")


def delay_until(eta: datetime | float, delay_seconds: float | None = None) -> float:
    """The delay before ``eta`` (an aware datetime or epoch seconds); 0 when it has passed."""
    if delay_seconds is not None:
        raise ValueError("give either eta or delay_seconds, not both")
    if isinstance(eta, datetime):
        if eta.tzinfo is None:
            raise ValueError("eta must be timezone-aware (e.g. datetime.now(timezone.utc))")
        at = eta.timestamp()
    else:
        at = float(eta)
    return max(0.0, at - time.time())


class Client(Protocol):
    """What handles and decorated functions need from a client: Redis or HTTP."""

    def submit(
        self, spec: JobSpec, input_json: dict[str, Any], opts: SubmitOptions
    ) -> Submission: ...

    def get(self, request_id: str) -> RequestRecord: ...

    def cancel(self, request_id: str) -> Status: ...

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
            idempotency_key=opts.idempotency_key,
            webhook_endpoint=opts.webhook_endpoint,
            metadata=opts.metadata,
            max_in_flight=self.settings.in_flight_cap(spec.app),
            parent_id=opts.parent_id,
        )
        if request.input_bin and len(request.input_bin) > self.settings.inline_input_max_bytes:
            # Large binary inputs go to the result store (S3), not Redis's memory.
            key = f"{result_prefix(spec.app, spec.name, request.request_id)}/input.msgpack"
            self.results.put_bytes(key, request.input_bin, MSGPACK_TYPE)
            request = replace(request, input_bin=None, input_ref=key)
        return self.store.submit(request)

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

    def cancel(self, request_id: str) -> Status:
        return self.store.cancel(request_id)

    def wait(self, request_id: str, timeout_s: float | None) -> RequestRecord:
        """Block on the request's event stream (no polling) until it is terminal; rides out
        Redis restarts within the timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last = None
        for attempt in Retrying(
            retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)),
            wait=wait_exponential(multiplier=0.1, max=2),
            stop=stop_after_delay(timeout_s) if timeout_s is not None else stop_never,
            reraise=True,
        ):
            with attempt:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                for event in self.store.follow(request_id, timeout_s=remaining):
                    last = event.status
        if last is None or not last.is_terminal:
            raise ResultTimeout(request_id, timeout_s, last)
        return self.store.get(request_id)

    def rerun_unless_succeeded(self, request_id: str) -> None:
        """Run an ended, unsuccessful request again (same id): a retried parent's child."""
        record = self.store.get(request_id)
        if record.status.is_terminal and record.status is not Status.SUCCEEDED:
            self.store.rerun(request_id)

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
