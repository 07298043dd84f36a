"""dramatiq's RedisBroker, with idle consumers that wake on enqueue instead of polling.

dramatiq's Redis consumer sleeps with a growing backoff when its queue is empty (about 12 ms
and more between fetches). Our submit script pushes a token on ``{ns}:wake:{queue}`` with
every message; an idle consumer blocks on that list (BLPOP) and fetches the moment one
arrives. We reuse dramatiq's own fetch/ack/requeue and keep its message layout.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Protocol

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage

from scheduler.supervision import LOOPS, LoopState
from storage.connection import BLOCKING_READ_TIMEOUT_S
from storage.keys import BROKER_NAMESPACE, NAMESPACE, wake_key
from storage.registry import ConsumerRegistry
from storage.requests import BrokerAck, lua_script

__all__ = ["WakingRedisBroker", "ClaimsOnFetch"]


class ClaimsOnFetch(Protocol):
    """Who takes the attempts the fetch script claims (the runner)."""

    worker_id: str

    @property
    def lease(self) -> tuple[float, int]:
        """(lease_ttl_s, retention_s) for the claim."""

    def claimed(self, flat: list[str]) -> None:
        """``flat``: the lease token, the message id, then the record's fields and values."""


_OWNERS_TTL_S = 2.0


class _WakingConsumer(_RedisConsumer):
    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        # timeout=0 turns dramatiq's own backoff sleep into sleep(0): we do the waiting here.
        super().__init__(broker, queue_name, prefetch, 0)
        self.idle_s = max(timeout, 100) / 1000
        self._wake = None if queue_name.endswith(".DQ") else wake_key(queue_name)
        self._freed = threading.Condition()
        self.health = broker.fetch_health(queue_name, self.idle_s)
        if self._wake is not None:
            broker.consumers_by_queue[queue_name] = self

    def _notify(self) -> None:
        with self._freed:
            self._freed.notify_all()

    def ack(self, message):  # type: ignore[no-untyped-def]
        try:
            if self.broker.take_acked(message.options["redis_message_id"]):
                # The runner's finish script acked it already (one round trip, not two).
                self.queued_message_ids.discard(message.message_id)
            else:
                super().ack(message)
        finally:
            self._notify()

    def nack(self, message):  # type: ignore[no-untyped-def]
        try:
            super().nack(message)
        finally:
            self._notify()

    def __next__(self):  # type: ignore[no-untyped-def]
        # dramatiq's consumer thread survives what this raises (it logs, backs off and builds
        # a new consumer); the fetch loop's health counts it and shows it in /healthz.
        try:
            message = self._next()
        except Exception as exc:
            self.health.failed(exc)
            raise
        self.health.passed()
        return message

    def _next(self):  # type: ignore[no-untyped-def]
        # Decided before the call: only a fetch that came back empty means an empty queue.
        fetching = not self.message_cache and self.outstanding_message_count < self.prefetch
        message = super().__next__()
        if message is not None:
            return message
        if not fetching:
            # Every slot is busy: wait for an ack instead of spinning.
            with self._freed:
                if self.outstanding_message_count >= self.prefetch:
                    self._freed.wait(self.idle_s)
        elif self._wake is not None and self.broker.owns_wakeups(self.queue_name):
            try:
                self.broker.client.blpop([self._wake], timeout=self.idle_s)
            except redis.ConnectionError as exc:
                raise ConnectionClosed(exc) from None
        else:  # another class's queue, or a delay queue (unused by jobcord): poll quietly
            with self._freed:
                self._freed.wait(self.idle_s)
        return None


class WakingRedisBroker(RedisBroker):
    """RedisBroker in jobcord's namespace, with no default middleware but CurrentMessage
    (jobcord does retries, time limits and age limits itself, in the request record), a
    finish script that acks the message it ends (``current_ack``), and a fetch that honours
    priorities (storage/lua/fetch.lua: one list per level, all sharing dramatiq's message hash,
    so acks, requeues and dead-letters stay dramatiq's own). Queues in ``fallback_after_s``
    belong to a cheaper GPU class: only messages older than that are taken from them."""

    def __init__(
        self,
        url: str,
        *,
        priority_aging_every: int = 10,
        fallback_after_s: dict[str, float] | None = None,
    ) -> None:
        client = redis.Redis.from_url(url, socket_timeout=BLOCKING_READ_TIMEOUT_S)
        # CurrentMessage: the runner reads which message carries its attempt, to ack it in
        # its finish script.
        super().__init__(client=client, namespace=BROKER_NAMESPACE, middleware=[CurrentMessage()])
        self.priority_aging_every = priority_aging_every
        #: Queues served as a fallback -> how long a message must wait before we take it.
        self.fallback_after_s = dict(fallback_after_s or {})
        self._registry = ConsumerRegistry(redis.Redis.from_url(url, decode_responses=True))
        self.consumers_by_queue: dict[str, _WakingConsumer] = {}
        self._owned: set[str] = set()
        self._owned_at = float("-inf")
        self._fetch = client.register_script(lua_script("fetch"))
        self._fetch_health: dict[str, LoopState] = {}
        self._acked: set[str] = set()  # message ids a finish script acked
        self._claims: ClaimsOnFetch | None = None
        self._acked_lock = threading.Lock()

    def current_ack(self) -> BrokerAck | None:
        """The message the calling worker thread is processing, as its finish script acks it."""
        message = CurrentMessage.get_current_message()
        if message is None or message.queue_name.endswith(".DQ"):
            return None
        return BrokerAck(self.broker_id, message.queue_name, message.options["redis_message_id"])

    def acked_by_finish(self, message_id: str) -> None:
        with self._acked_lock:
            self._acked.add(message_id)

    def take_acked(self, message_id: str) -> bool:
        """Whether a finish script acked ``message_id`` (forgotten once asked)."""
        with self._acked_lock:
            if message_id in self._acked:
                self._acked.discard(message_id)
                return True
            return False

    def fetch_health(self, queue_name: str, interval_s: float) -> LoopState:
        """The supervised-loop health of fetching ``queue_name`` (one per queue, kept across
        the consumers dramatiq builds again after an error)."""
        state = self._fetch_health.get(queue_name)
        if state is None:
            state = LOOPS.add(LoopState(f"fetch:{queue_name}", interval_s, interval_s))
            self._fetch_health[queue_name] = state
        return state

    def close(self) -> None:
        for state in self._fetch_health.values():
            LOOPS.unregister(state)
        super().close()

    def claim_on_fetch(self, claims: ClaimsOnFetch | None) -> None:
        """Claim each message's attempt inside the fetch script (one round trip, not two),
        handing the claimed records to ``claims``; None: fetch only."""
        self._claims = claims

    def do_fetch(self, queue_name: str, prefetch: int) -> list[bytes]:
        if queue_name.endswith(".DQ"):  # delay queues are dramatiq's business
            return self._dispatch("fetch")(queue_name, prefetch)  # type: ignore[no-any-return]
        args = [
            NAMESPACE,
            BROKER_NAMESPACE,
            queue_name,
            self.broker_id,
            prefetch,
            self.priority_aging_every,
            self._min_age_ms(queue_name),
        ]
        claims = self._claims
        if claims is None:
            return self._fetch(args=args)  # type: ignore[no-any-return]
        prefix = uuid.uuid4().hex
        messages, records = self._fetch(args=[*args, claims.worker_id, prefix, *claims.lease])
        for flat in records:
            if flat[0]:  # a lease token: claimed (this client reads bytes)
                claims.claimed([x.decode() for x in flat])
        return messages  # type: ignore[no-any-return]

    def add_capacity(self, n: int) -> None:
        """Let every queue's consumer hold ``n`` more (or fewer) messages: a slot was lent
        while its job waits on other requests, or given back."""
        for consumer in list(self.consumers_by_queue.values()):
            consumer.prefetch = max(1, consumer.prefetch + n)
            consumer._notify()

    def _has_owner(self, queue_name: str) -> bool:
        """Whether a live consumer serves this queue as its own class (cached for 2 s)."""
        now = time.monotonic()
        if now - self._owned_at > _OWNERS_TTL_S:
            try:
                live = self._registry.live()
            except redis.RedisError:
                live = []
            self._owned = {q for c in live for q in c.get("queues", [])}
            self._owned_at = now
        return queue_name in self._owned

    def _min_age_ms(self, queue_name: str) -> int:
        """A fallback queue's messages are ours only after they waited for its own class; if
        no consumer of that class is alive, at once."""
        wait_s = self.fallback_after_s.get(queue_name, 0.0)
        if wait_s <= 0 or not self._has_owner(queue_name):
            return 0
        return int(wait_s * 1000)

    def owns_wakeups(self, queue_name: str) -> bool:
        """Idle consumers of a queue block on its wake list, unless it is another class's
        queue whose own consumers are alive: those wake-ups are theirs."""
        return queue_name not in self.fallback_after_s or not self._has_owner(queue_name)

    @property
    def consumer_class(self):  # type: ignore[no-untyped-def]
        return _WakingConsumer
