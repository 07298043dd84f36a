"""Leases on running requests, renewed by the consumer's parent process.

Renewal happens here, not in the process running the job, so a job that holds the GIL or is
stuck in C code never loses its lease (and is never run twice); a consumer that dies stops
renewing and its requests are recovered within ``lease_ttl_s``. Cancels arrive on a pub/sub
channel at once, and through the renewal reply as a backstop.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog

from storage.keys import CANCELS_CHANNEL
from storage.requests import RequestStore

__all__ = ["LeaseKeeper", "Running"]

log = structlog.get_logger("jobcord.leases")


@dataclass
class Running:
    token: str
    stop: Callable[[str], None]  # called with "cancel" or "lost"


class LeaseKeeper:
    def __init__(
        self,
        store: RequestStore,
        lease_ttl_s: float,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.heartbeat = heartbeat
        self.interval_s = lease_ttl_s / 3
        self._running: dict[str, Running] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(target=self._renew_loop, name="jobcord-leases", daemon=True),
            threading.Thread(target=self._cancel_loop, name="jobcord-cancels", daemon=True),
        ]
        self._pubsub: redis.client.PubSub | None = None

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()

    def add(self, request_id: str, running: Running) -> None:
        with self._lock:
            self._running[request_id] = running

    def remove(self, request_id: str) -> None:
        with self._lock:
            self._running.pop(request_id, None)

    def _stop(self, request_id: str, reason: str) -> None:
        with self._lock:
            running = self._running.get(request_id)
        if running is not None:
            log.info("stopping request", request_id=request_id, reason=reason)
            running.stop(reason)

    def renew_once(self) -> None:
        with self._lock:
            leases = {rid: r.token for rid, r in self._running.items()}
        for request_id, state in self.store.renew(leases).items():
            if state == "cancel":
                self._stop(request_id, "cancel")
            elif state == "lost":
                self._stop(request_id, "lost")

    def _renew_loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.renew_once()
                if self.heartbeat is not None:
                    self.heartbeat()
            except redis.RedisError as exc:
                log.warning("lease renewal failed", error=str(exc))

    def _cancel_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self._pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
                self._pubsub.subscribe(CANCELS_CHANNEL)
                while not self._stopped.is_set():
                    message = self._pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._stop(message["data"], "cancel")
            except (redis.RedisError, ValueError, AttributeError) as exc:
                if self._stopped.is_set():
                    return
                log.warning("cancel listener reconnecting", error=str(exc))
                self._stopped.wait(1.0)
