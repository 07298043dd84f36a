"""A child's way to its work: fetch-and-claim over the consumer's queues, and an idle wait
that wakes the moment a request arrives.

Queues are served in order: the consumer's own class first, then the queues of cheaper
classes it may take work from once it has waited ``fallback_after_s`` there (and at once when
no consumer of that class is alive). Priority levels come first across queues; every
``priority_aging_every``-th fetch looks at them lowest first, so low priorities still get
about one start in that many under sustained high-priority load.

Idle, a child blocks on the wake lists the submit script pushes to (BLPOP, no polling), and
on its own list, which its parent pushes to when it wants the child to look at the board (a
stop) at once.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from jobcord.storage.keys import child_wake_key, wake_key
from jobcord.storage.registry import ConsumerRegistry
from jobcord.storage.requests import RequestStore
from jobcord.storage.statuses import Status

__all__ = ["QueuePlan", "Fetcher", "IDLE_WAIT_S"]

#: An idle child looks at the board at least this often, even if nobody wakes it.
IDLE_WAIT_S = 1.0
#: How long the list of live consumers (who owns which queue) is trusted.
_OWNERS_TTL_S = 2.0


@dataclass(frozen=True)
class QueuePlan:
    """The queues a consumer takes work from: its own, then fallbacks (another class's)."""

    own: list[str]
    fallback: list[str] = field(default_factory=list)
    fallback_after_s: float = 0.0


class Fetcher:
    def __init__(
        self,
        store: RequestStore,
        plan: QueuePlan,
        *,
        worker: str,
        device: str,
        wake_name: str,
        aging_every: int,
        runs: str = "",
    ) -> None:
        self.store = store
        self.runs = runs  # the job versions this consumer runs (AppRegistry.runs)
        self.plan = plan
        self.worker = worker
        self.device = device
        self._own_wake = child_wake_key(wake_name)
        self._aging_every = aging_every
        self._fetches = itertools.count(1)
        self._registry = ConsumerRegistry(store.client) if plan.fallback else None
        self._owned: set[str] = set()
        self._owned_at = float("-inf")

    def fetch(
        self, n: int = 1, queues: list[str] | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """Claim up to ``n`` attempts (from ``queues`` only, if given: own queues of this
        consumer): (lease token, record fields) each."""
        queues_ages, lowest_first = self._next_fetch(queues)
        return self.store.fetch(
            queues_ages, self.worker, self.device, n=n, lowest_first=lowest_first, runs=self.runs
        )

    def finish_and_fetch(
        self,
        request_id: str,
        token: str,
        status: Status,
        fields: dict[str, Any],
        n: int = 1,
        queues: list[str] | None = None,
    ) -> tuple[bool, list[tuple[str, dict[str, str]]]]:
        """End an attempt and claim up to ``n`` more (as :meth:`fetch`), in one round trip."""
        queues_ages, lowest_first = self._next_fetch(queues)
        return self.store.finish_next(
            request_id,
            token,
            status,
            fields,
            queues_ages,
            self.worker,
            self.device,
            n=n,
            lowest_first=lowest_first,
            runs=self.runs,
        )

    def _next_fetch(self, only: list[str] | None) -> tuple[list[tuple[str, int]], bool]:
        """The queues with their min ages, and whether this fetch looks lowest first."""
        lowest_first = self._aging_every > 0 and next(self._fetches) % self._aging_every == 0
        if only is not None:
            return [(q, 0) for q in only], lowest_first
        queues = [(q, 0) for q in self.plan.own]
        queues += [(q, self._min_age_ms(q)) for q in self.plan.fallback]
        return queues, lowest_first

    def wait_for_work(
        self, timeout_s: float = IDLE_WAIT_S, queues: list[str] | None = None
    ) -> None:
        """Block until a request may be waiting (on ``queues`` only, if given), the parent
        wakes us, or ``timeout_s``."""
        if queues is not None:
            keys = [self._own_wake, *(wake_key(q) for q in queues)]
        else:
            keys = [self._own_wake, *(wake_key(q) for q in self.plan.own)]
            keys += [wake_key(q) for q in self.plan.fallback if not self._has_owner(q)]
        self.store.scripts.direct("BLPOP", *keys, timeout_s)

    def _has_owner(self, queue: str) -> bool:
        """Whether a live consumer serves this queue as its own class (cached for 2 s)."""
        if self._registry is None:
            return False
        now = time.monotonic()
        if now - self._owned_at > _OWNERS_TTL_S:
            try:
                live = self._registry.live()
            except redis.RedisError:
                live = []
            self._owned = {q for c in live for q in c.get("queues", [])}
            self._owned_at = now
        return queue in self._owned

    def _min_age_ms(self, queue: str) -> int:
        """A fallback queue's messages are ours only after they waited for its own class; if
        no consumer of that class is alive, at once."""
        wait_s = self.plan.fallback_after_s
        if wait_s <= 0 or not self._has_owner(queue):
            return 0
        return int(wait_s * 1000)
