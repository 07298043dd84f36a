"""Leases on running requests, renewed by the consumer's parent process.

Renewal happens here, not in the process running the job, so a job that holds the GIL or is
stuck in C code never loses its lease (and is never run twice); a consumer that dies stops
renewing and its requests are recovered within ``lease_ttl_s``. What to renew comes from the
board (``held``: request id -> lease token); a cancel or a lost lease goes to ``stop``.
Cancels arrive on a pub/sub channel at once, and through the renewal reply as a backstop.

Each renewal Redis answers is timed (:meth:`LeaseKeeper.renewed_at`): the supervisor ends an
attempt whose lease went a whole TTL without one (self-fencing), since by then recovery may
hand the request to another worker.

Both loops are supervised (``jobcord.scheduler.supervision``): whatever a pass raises is logged,
counted and backed off from, and the loop goes on; renewal never pauses past its interval.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import redis
import structlog

from jobcord.scheduler.supervision import LOOPS, LoopState, run_supervised
from jobcord.storage.keys import cancels_channel
from jobcord.storage.requests import RequestStore

__all__ = ["LeaseKeeper"]

log = structlog.get_logger("jobcord.leases")

#: The cancel listener waits this long for a message per pass.
_CANCEL_POLL_S = 1.0


class LeaseKeeper:
    def __init__(
        self,
        store: RequestStore,
        lease_ttl_s: float,
        held: Callable[[], dict[str, str]],
        stop: Callable[[str, str | None, str], object],
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.heartbeat = heartbeat
        self.interval_s = lease_ttl_s / 3
        self._held = held
        self._stop_request = stop  # (request id, its token if known, "cancel" | "lost")
        self._stopped = threading.Event()
        # Renewal never backs off past its interval: a longer pause would lose the leases.
        self.renew_state = LoopState("leases", self.interval_s, backoff_max_s=self.interval_s)
        self.cancel_state = LoopState("cancels", _CANCEL_POLL_S, backoff_max_s=5.0)
        self._threads = [
            threading.Thread(target=self._renew_loop, name="jobcord-leases", daemon=True),
            threading.Thread(target=self._cancel_loop, name="jobcord-cancels", daemon=True),
        ]
        self._pubsub: redis.client.PubSub | None = None
        self._renewed: dict[tuple[str, str], float] = {}  # (rid, token) -> monotonic time

    def start(self) -> None:
        LOOPS.add(self.renew_state)
        LOOPS.add(self.cancel_state)
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop both loops. The listener closes its own subscription as it ends: closed from
        here while it reads, its connection would go back to the pool still in use."""
        self._stopped.set()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(_CANCEL_POLL_S + 1)
        if not any(t.is_alive() for t in self._threads):
            self._drop_pubsub()

    def _stop(self, request_id: str, token: str | None, reason: str, loop: LoopState) -> None:
        """Stop one request; if that raises, it is logged and counted against ``loop``, and
        the pass goes on with the others (and the heartbeat)."""
        try:
            self._stop_request(request_id, token, reason)
        except Exception as exc:  # noqa: BLE001 - one request never stalls the others
            loop.noted(exc, request_id=request_id, reason=reason)

    def renew_once(self) -> None:
        """Renew every lease held here, then the consumer's registration (one pass)."""
        leases = self._held()
        sent = time.monotonic()  # the lease runs from no earlier than this
        states = self.store.renew(leases)
        self._renewed = {(rid, token): sent for rid, token in leases.items()}
        for request_id, state in states.items():
            if state in ("cancel", "lost"):
                self._stop(request_id, leases[request_id], state, self.renew_state)
        if self.heartbeat is not None:
            self.heartbeat()

    def renewed_at(self, request_id: str, token: str) -> float | None:
        """When the last renewal of this lease that Redis answered was sent (monotonic)."""
        return self._renewed.get((request_id, token))

    def listen_once(self) -> None:
        """Wait up to a second for one cancel message (subscribing first if need be); a
        failure drops the subscription, and the next pass subscribes again."""
        try:
            if self._pubsub is None:
                pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(cancels_channel())
                self._pubsub = pubsub
            message = self._pubsub.get_message(timeout=_CANCEL_POLL_S)
        except Exception:
            self._drop_pubsub()
            raise
        if message is not None:
            self._stop(message["data"], None, "cancel", self.cancel_state)

    def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                pubsub.close()

    def _renew_loop(self) -> None:
        run_supervised(self.renew_state, self.renew_once, self._stopped)

    def _cancel_loop(self) -> None:
        run_supervised(self.cancel_state, self.listen_once, self._stopped, pause_s=0.0)
        self._drop_pubsub()
