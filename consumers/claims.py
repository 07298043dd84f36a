"""Attempts the fetch script claimed, held until a worker thread takes them.

The fetch script (storage/lua/fetch.lua) starts each message's attempt as it takes it, so a
claimed attempt exists before any worker thread runs it: its lease is renewed from the claim
on, a stop that comes meanwhile (a cancel, a lost lease) is kept for it, and a consumer that
shuts down hands the ones never started back, uncounted, rather than let their leases expire.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import redis
import structlog

from storage.records import RequestRecord
from storage.requests import BrokerAck, RequestStore
from storage.settings import Settings

from .leases import LeaseKeeper, Running

__all__ = ["Claimed", "FetchClaims"]

log = structlog.get_logger("jobcord.claims")


def _request_id(message_id: str) -> str:
    return message_id.rsplit(".", 2)[0]  # '<request id>.<attempt>.<seq>' (the enqueue's)


class Claimed:
    """One claimed attempt: its lease token and record fields, and any stop meanwhile."""

    __slots__ = ("token", "fields", "stopped")

    def __init__(self, token: str, fields: list[str]) -> None:
        self.token = token
        self.fields = fields
        self.stopped: str | None = None

    def stop(self, why: str) -> None:
        self.stopped = why

    def record(self) -> RequestRecord:
        flat = self.fields
        return RequestRecord.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))


class FetchClaims:
    """What the broker's fetch hands its claims to (consumers/broker.py: ClaimsOnFetch)."""

    def __init__(
        self,
        store: RequestStore,
        leases: LeaseKeeper,
        settings: Settings,
        worker_id: str,
        current_ack: Callable[[], BrokerAck | None],
    ) -> None:
        self.store = store
        self.leases = leases
        self.worker_id = worker_id
        self.lease = (settings.lease_ttl_s, int(settings.record_retention_s))
        self._current_ack = current_ack
        self._claims: dict[str, Claimed] = {}  # by broker message id
        self._lock = threading.Lock()

    def claimed(self, flat: list[str]) -> None:
        """From the consumer thread: ``flat`` is the lease token, the message id, then the
        record's fields and values."""
        claim = Claimed(flat[0], flat[2:])
        with self._lock:
            self._claims[flat[1]] = claim
        self.leases.add(_request_id(flat[1]), Running(claim.token, claim.stop))

    def take(self) -> Claimed | None:
        """The claim of the message the calling worker thread is processing, if fetch made one."""
        ack = self._current_ack()
        if ack is None:
            return None
        with self._lock:
            return self._claims.pop(ack.message_id, None)

    def release_unstarted(self) -> None:
        """At shutdown, after the workers stopped: hand back attempts claimed but never started
        (a preemption, not counted against them)."""
        with self._lock:
            claims, self._claims = self._claims, {}
        for message_id, claim in claims.items():
            rid = _request_id(message_id)
            try:
                self.store.retry(
                    rid,
                    claim.token,
                    delay_s=0,
                    counter="preemptions",
                    error={"type": "Preempted", "message": "consumer shut down before it started"},
                    reason="consumer shut down",
                )
            except redis.RedisError as exc:  # its lease runs out and recovery requeues it
                log.warning("could not hand back a claimed request", request_id=rid, error=str(exc))
            self.leases.remove(rid)
