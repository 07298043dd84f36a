"""The webhook deliverer: its own process (``jobcord scheduler``), never a GPU consumer.

Terminal requests with a ``webhook_endpoint`` enter ``{ns}:webhooks:due`` atomically with
their final status. Each delivery is claimed with a lease (a crashed deliverer's come back),
signed with every active secret, sent to the address just checked (no DNS rebinding), without
following redirects; a non-2xx answer, a timeout or a connection error is retried on the
schedule (``JOBCORD_WEBHOOK_RETRY_SCHEDULE_S``, jittered). The receiver's body is never
stored or echoed: only its status code and timing. The result stays in storage whatever
happens to the webhook.
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

import httpx
import redis
import structlog

from storage.records import RequestRecord
from storage.requests import RequestStore
from storage.results import ResultStore, with_urls
from storage.settings import Settings
from storage.webhook_secrets import WebhookSecrets

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


class WebhookDeliverer(threading.Thread):
    def __init__(
        self, store: RequestStore, results: ResultStore, settings: Settings, *, tick_s: float = 0.2
    ) -> None:
        super().__init__(name="jobcord-webhooks", daemon=True)
        self.store = store
        self.results = results
        self.settings = settings
        self.secrets = WebhookSecrets(store.client, settings.webhook_secret)
        self.allowed = parse_networks(settings.webhook_allowed_networks)
        self.schedule = settings.webhook_schedule()
        self.tick_s = tick_s
        self.lease_s = 3 * settings.webhook_timeout_s + 10
        self.http = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
        self._pool = ThreadPoolExecutor(settings.webhook_concurrency, "jobcord-webhook")
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                due = self.store.webhooks_due(
                    lease_s=self.lease_s, batch=self.settings.webhook_concurrency
                )
            except redis.RedisError as exc:
                log.warning("webhook queue unavailable", error=str(exc))
                due = []
            if due:
                list(self._pool.map(self.deliver, due))
            else:
                self._stopped.wait(self.tick_s)
        self._pool.shutdown(wait=True)
        self.http.close()

    def _retry_in(self, attempts_before: int) -> float | None:
        if attempts_before >= len(self.schedule):
            return None
        base = self.schedule[attempts_before]
        return random.uniform(0.8 * base, 1.2 * base)

    def deliver(self, request_id: str) -> None:
        try:
            record = with_urls(self.store.get(request_id), self.results)
        except Exception as exc:  # a missing record or result store: nothing left to send
            self.store.webhook_failed(request_id, f"cannot build the payload: {exc}", None)
            return
        url = record.webhook_endpoint
        secrets = self.secrets.active(record.app)
        if not url or not secrets:
            self.store.webhook_failed(request_id, "no endpoint or no signing secret", None)
            return
        try:
            host, port, ip = resolve_target(url, self.allowed)
        except WebhookTargetRefused as exc:
            self.store.webhook_failed(request_id, str(exc), None)  # refused: never retried
            return
        body = webhook_body(record)
        headers = signed_headers(f"msg_{request_id}", body, secrets)
        default_port = 443 if url.startswith("https") else 80
        headers["host"] = host if port == default_port else f"{host}:{port}"
        extensions = {"sni_hostname": host} if url.startswith("https") else {}
        started = time.monotonic()
        try:
            reply = self.http.post(
                _pinned(url, ip, port), content=body, headers=headers, extensions=extensions
            )
            ms = (time.monotonic() - started) * 1000
            if 200 <= reply.status_code < 300:
                self.store.webhook_delivered(request_id, reply.status_code, ms)
                log.info("webhook delivered", request_id=request_id, code=reply.status_code)
                return
            error = f"HTTP {reply.status_code} after {ms:.0f} ms"
        except httpx.TimeoutException:
            error = f"no answer within {self.settings.webhook_timeout_s} s"
        except httpx.HTTPError as exc:
            error = f"connection failed: {type(exc).__name__}"
        retry_in = self._retry_in(record.webhook_attempts)
        status = self.store.webhook_failed(request_id, error, retry_in)
        log.info(
            "webhook attempt failed",
            request_id=request_id,
            error=error,
            status=status,
            retry_in_s=retry_in,
        )
