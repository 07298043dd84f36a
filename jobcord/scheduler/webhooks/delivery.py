"""The webhook deliverer: its own process (``jobcord scheduler``), never a GPU consumer.

Terminal requests with a ``webhook_endpoint`` (or an ``on_complete`` dramatiq actor, sent by
``actors`` on the same schedule, leases and status) enter ``{ns}:webhooks:due`` atomically with
their final status. Each delivery is claimed with a lease (a crashed deliverer's come back),
signed with every active secret, sent to the address just checked (no DNS rebinding), without
following redirects; a non-2xx answer, a timeout or a connection error is retried on the
schedule (``JOBCORD_WEBHOOK_RETRY_SCHEDULE_S``, jittered). The receiver's body is never
stored or echoed: only its status code and timing. The result stays in storage whatever
happens to the webhook.

Bounds: each attempt has one wall-clock deadline (``JOBCORD_WEBHOOK_TIMEOUT_S``) over
connect, send and read, and reads at most 4 KiB of the reply (``attempt``). The loop hands
due deliveries to free workers as they free up, and one receiver (host and port) has at most
``JOBCORD_WEBHOOK_CONCURRENCY_PER_RECEIVER`` deliveries under way (default: half the
workers); its others wait (not an attempt), so a slow receiver never holds up the rest. An
unexpected exception ends that one delivery FAILED with the reason; the loop goes on.
"""

from __future__ import annotations

import ipaddress
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import redis
import structlog

from jobcord.storage import keys
from jobcord.storage.records import RequestRecord
from jobcord.storage.requests import RequestStore
from jobcord.storage.results import ResultStore, with_urls
from jobcord.storage.settings import Settings
from jobcord.storage.webhook_secrets import WebhookSecrets

from ..loops import EveryInterval
from .actors import ActorSender
from .attempt import Attempt, post_once, webhook_http_client
from .signing import signed_headers
from .targets import WebhookTargetRefused, parse_networks, resolve_target

__all__ = ["WebhookDeliverer", "webhook_body"]

log = structlog.get_logger("jobcord.webhooks")


def webhook_body(record: RequestRecord) -> bytes:
    """``{"type": "request.completed", "timestamp", "data": <the request as GET returns it>}``."""
    when = datetime.fromtimestamp(record.finished_at or time.time(), UTC).isoformat()
    payload = {"type": "request.completed", "timestamp": when, "data": record.public()}
    return json.dumps(payload, separators=(",", ":")).encode()


def _pinned(url: str, ip: str, port: int) -> str:
    """The URL with its host replaced by the checked address."""
    parts = urlsplit(url)
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    return urlunsplit((parts.scheme, f"{host}:{port}", parts.path or "/", parts.query, ""))


class WebhookDeliverer(EveryInterval):
    """The supervised loop that hands due deliveries to free workers, each pass."""

    def __init__(
        self, store: RequestStore, results: ResultStore, settings: Settings, *, tick_s: float = 0.2
    ) -> None:
        super().__init__("webhooks", tick_s)
        self.store = store
        self.results = results
        self.settings = settings
        self.secrets = WebhookSecrets(
            store.client,
            settings.webhook_secret,
            default_overlap_s=settings.webhook_default_secret_overlap_s,
        )
        self.allowed = parse_networks(settings.webhook_allowed_networks)
        self.schedule = settings.webhook_schedule()
        self.deadline_s = settings.webhook_timeout_s
        self.lease_s = 3 * settings.webhook_timeout_s + 10
        self.concurrency = settings.webhook_concurrency
        self.per_receiver = settings.webhook_concurrency_per_receiver or max(
            1, self.concurrency // 2
        )
        self.http = webhook_http_client(self.deadline_s)
        self.actors = ActorSender(
            settings.dramatiq_broker_url, settings.dramatiq_actors, self.deadline_s
        )
        self._pool = ThreadPoolExecutor(self.concurrency, "jobcord-webhook")
        self._lock = threading.Lock()
        self._busy: dict[str, str | None] = {}  # request id -> its receiver, once known

    def run(self) -> None:
        threading.Thread(
            target=self._wait_for_due, name="jobcord-webhook-wake", daemon=True
        ).start()
        try:
            super().run()
        finally:
            self._pool.shutdown(wait=True)
            self.http.close()
            self.actors.close()

    def _wait_for_due(self) -> None:
        """Block on the wake list, so that a delivery made due starts now, not at the next
        tick (which still finds every due delivery: this only saves the wait)."""
        wake_key = keys.webhooks_wake_key()
        while not self._stopped.is_set():
            try:
                if self.store.client.blpop([wake_key], timeout=1):
                    self.wake()
            except redis.TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - Redis away: the ticks go on without it
                self._stopped.wait(1.0)

    def run_once(self) -> int:
        """Claim as many due deliveries as there are free workers and hand them out; a
        worker that finishes wakes the loop, so nobody waits for the slowest receiver."""
        with self._lock:
            free = self.concurrency - len(self._busy)
        if free <= 0:
            return 0
        due = self.store.webhooks_due(lease_s=self.lease_s, batch=free)
        for request_id in due:
            with self._lock:
                self._busy[request_id] = None
            self._pool.submit(self._work, request_id)
        return len(due)

    def _work(self, request_id: str) -> None:
        try:
            self.deliver(request_id)
        except Exception as exc:  # noqa: BLE001 - Redis gone mid-delivery: its lease brings it back
            self.state.noted(exc, request_id=request_id)
        finally:
            with self._lock:
                self._busy.pop(request_id, None)
            self.wake()

    def _take_receiver(self, request_id: str, receiver: str) -> bool:
        """Count this delivery against its receiver; False when the receiver already has
        ``per_receiver`` deliveries under way (one receiver never holds every worker)."""
        with self._lock:
            if sum(1 for r in self._busy.values() if r == receiver) >= self.per_receiver:
                return False
            self._busy[request_id] = receiver
            return True

    def _retry_in(self, attempts_before: int) -> float | None:
        if attempts_before >= len(self.schedule):
            return None
        base = self.schedule[attempts_before]
        return random.uniform(0.8 * base, 1.2 * base)

    def deliver(self, request_id: str) -> None:
        """One attempt. Whatever goes wrong ends in the record: an unexpected exception marks
        this delivery FAILED with the reason (never retried: it would fail alike)."""
        try:
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                self._deliver(request_id)
        except redis.RedisError:
            raise
        except Exception as exc:  # noqa: BLE001 - this delivery's fault, not the loop's
            self.state.noted(exc, request_id=request_id)
            reason = f"delivery failed unexpectedly: {type(exc).__name__}: {exc}"[:500]
            self.store.webhook_failed(request_id, reason, None)

    def _deliver(self, request_id: str) -> None:
        try:
            record = with_urls(self.store.get(request_id), self.results)
        except redis.RedisError:
            raise
        except Exception as exc:  # a missing record or result store: nothing left to send
            self.store.webhook_failed(request_id, f"cannot build the payload: {exc}", None)
            return
        send = self._to_actor if record.on_complete is not None else self._to_url
        attempt = send(record)
        if attempt is not None:
            self._settle(record, attempt)

    def _to_actor(self, record: RequestRecord) -> Attempt | None:
        """Enqueue the completion on the team's dramatiq broker (``actors``)."""
        assert record.on_complete is not None
        refused = self.actors.refusal(record.on_complete)
        if refused is not None:
            self.store.webhook_failed(record.request_id, refused, None)  # never retried
            return None
        if not self._take_receiver(record.request_id, self.actors.receiver):
            self._defer(record.request_id)
            return None
        return self.actors.send(record)

    def _to_url(self, record: RequestRecord) -> Attempt | None:
        """POST the signed webhook to the address just checked."""
        request_id = record.request_id
        url = record.webhook_endpoint
        secrets = self.secrets.active(record.app)
        if not url or not secrets:
            self.store.webhook_failed(request_id, "no endpoint or no signing secret", None)
            return None
        try:
            host, port, ip = resolve_target(url, self.allowed)
        except WebhookTargetRefused as exc:
            self.store.webhook_failed(request_id, str(exc), None)  # refused: never retried
            return None
        if not self._take_receiver(request_id, f"{host}:{port}"):
            self._defer(request_id)
            return None
        body = webhook_body(record)
        headers = signed_headers(f"msg_{request_id}", body, secrets)
        https = url.lower().startswith("https")
        headers["host"] = host if port == (443 if https else 80) else f"{host}:{port}"
        return post_once(
            self.http,
            _pinned(url, ip, port),
            content=body,
            headers=headers,
            extensions={"sni_hostname": host} if https else {},
            deadline_s=self.deadline_s,
        )

    def _defer(self, request_id: str) -> None:
        """The receiver is busy: due again soon, not an attempt."""
        self.store.webhook_defer(request_id, random.uniform(0.5, 1.0) * min(self.deadline_s, 5))

    def _settle(self, record: RequestRecord, attempt: Attempt) -> None:
        """Record one attempt: delivered, or failed and retried on the schedule (or FAILED)."""
        request_id = record.request_id
        ms = attempt.elapsed_s * 1000
        if attempt.ok:
            self.store.webhook_delivered(request_id, attempt.status_code, ms)
            log.info("webhook delivered", request_id=request_id, code=attempt.status_code)
            return
        assert attempt.error is not None
        retry_in = self._retry_in(record.webhook_attempts)
        status = self.store.webhook_failed(
            request_id,
            attempt.error,
            retry_in,
            attempt.status_code,
            ms if attempt.status_code is not None else None,
        )
        log.info(
            "webhook attempt failed",
            request_id=request_id,
            error=attempt.error,
            status=status,
            retry_in_s=retry_in,
        )
