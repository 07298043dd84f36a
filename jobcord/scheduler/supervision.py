"""Supervised loops: no long-lived loop can die silently.

A loop runs one pass after another on its own thread. Whatever a pass raises is logged with
the loop's name (a traceback unless it is a Redis outage), counted in
``jobcord_loop_errors_total{loop}``, and followed by a backoff (the interval, doubled for each
consecutive error, capped); then the loop goes on. Each loop's health (its last completed
pass, consecutive and total errors, the last error) lives in one registry per process,
:data:`LOOPS`, which ``jobcord.scheduler.health`` publishes to Redis for ``/healthz`` and
``jobcord health``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis
import structlog
from prometheus_client import Counter, Gauge

__all__ = [
    "LOOPS",
    "LOOP_ERRORS",
    "BACKOFF_MAX_S",
    "LoopHealth",
    "LoopRegistry",
    "LoopState",
    "run_supervised",
]

log = structlog.get_logger("jobcord.loops")

#: The longest pause after consecutive errors, unless a loop asks for less.
BACKOFF_MAX_S = 10.0
#: The longest pause while Redis is unreachable: a failed connect costs nothing, and the
#: loops that recover dead workers' requests must run as soon as it is back (a 10 s backoff
#: after a Redis blip delayed a requeue by 6 s in the fault suite).
OUTAGE_BACKOFF_MAX_S = 1.0

LOOP_ERRORS = Counter(
    "jobcord_loop_errors_total", "Passes of a long-lived loop that raised", ["loop"]
)
LOOP_LAST_PASS = Gauge(
    "jobcord_loop_last_pass_timestamp_seconds", "When the loop last completed a pass", ["loop"]
)


@dataclass(frozen=True)
class LoopHealth:
    """One loop's health at one moment (epoch seconds)."""

    name: str
    interval_s: float
    started_at: float
    last_pass_at: float | None
    consecutive_errors: int
    errors_total: int
    last_error: str | None
    last_error_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoopState:
    """A loop's health, written by its thread and read by any other."""

    def __init__(self, name: str, interval_s: float, backoff_max_s: float) -> None:
        self.name = name
        self.interval_s = interval_s
        self.backoff_max_s = max(backoff_max_s, interval_s)
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._last_pass_at: float | None = None
        self._consecutive = 0
        self._total = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._gauge = LOOP_LAST_PASS.labels(name)

    def passed(self) -> None:
        now = time.time()
        # A fetch loop passes once per message: after a clean pass, touch the lock and the
        # gauge at most every 0.1 s (health is judged in seconds).
        last = self._last_pass_at
        if self._consecutive == 0 and last is not None and now - last < 0.1:
            return
        with self._lock:
            self._last_pass_at = now
            self._consecutive = 0
        self._gauge.set(now)

    def failed(self, exc: BaseException) -> float:
        """Count and log ``exc``; returns how long to back off before the next pass."""
        with self._lock:
            self._consecutive += 1
            self._total += 1
            self._last_error = f"{type(exc).__name__}: {exc}"[:500]
            self._last_error_at = time.time()
            consecutive = self._consecutive
        LOOP_ERRORS.labels(self.name).inc()
        base = max(self.interval_s, 0.05)
        longest = self.backoff_max_s
        outage = isinstance(exc, redis.ConnectionError | redis.TimeoutError)
        if outage and not isinstance(exc, redis.AuthenticationError):  # a bad password: config
            longest = min(longest, max(OUTAGE_BACKOFF_MAX_S, self.interval_s))
        delay = min(longest, base * 2 ** min(consecutive - 1, 30))
        fields = {"loop": self.name, "error": self._last_error, "consecutive_errors": consecutive}
        if isinstance(exc, redis.RedisError):  # an outage: Redis will be back
            log.warning("loop pass failed", retry_in_s=round(delay, 3), **fields)
        else:
            log.error("loop pass failed", retry_in_s=round(delay, 3), exc_info=exc, **fields)
        return delay

    def failed_elsewhere(self, error: str) -> None:
        """Count a failed pass that another process ran and logged (a consumer's child)."""
        with self._lock:
            self._consecutive += 1
            self._total += 1
            self._last_error = error[:500]
            self._last_error_at = time.time()
        LOOP_ERRORS.labels(self.name).inc()

    def noted(self, exc: BaseException, **context: Any) -> None:
        """Count an error a pass handled itself (it skipped one item and went on)."""
        with self._lock:
            self._total += 1
            self._last_error = f"{type(exc).__name__}: {exc}"[:500]
            self._last_error_at = time.time()
        LOOP_ERRORS.labels(self.name).inc()
        trace = None if isinstance(exc, redis.RedisError) else exc
        log.error(
            "loop item failed", loop=self.name, error=self._last_error, exc_info=trace, **context
        )

    def snapshot(self) -> LoopHealth:
        with self._lock:
            return LoopHealth(
                self.name,
                self.interval_s,
                self.started_at,
                self._last_pass_at,
                self._consecutive,
                self._total,
                self._last_error,
                self._last_error_at,
            )


class LoopRegistry:
    """The loops of one process, by unique name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loops: dict[str, LoopState] = {}

    def register(
        self, name: str, interval_s: float, backoff_max_s: float = BACKOFF_MAX_S
    ) -> LoopState:
        return self.add(LoopState(name, interval_s, backoff_max_s))

    def add(self, state: LoopState) -> LoopState:
        """Register ``state``, renamed ``name#2`` (and so on) if its name is taken."""
        with self._lock:
            base, n = state.name.split("#", 1)[0], 1
            while state.name in self._loops and self._loops[state.name] is not state:
                n += 1
                state.name = f"{base}#{n}"
            state._gauge = LOOP_LAST_PASS.labels(state.name)
            self._loops[state.name] = state
            return state

    def unregister(self, state: LoopState) -> None:
        with self._lock:
            if self._loops.get(state.name) is state:
                del self._loops[state.name]

    def get(self, name: str) -> LoopState | None:
        with self._lock:
            return self._loops.get(name)

    def snapshot(self) -> list[LoopHealth]:
        with self._lock:
            states = list(self._loops.values())
        return sorted((s.snapshot() for s in states), key=lambda h: h.name)


#: Every supervised loop of this process.
LOOPS = LoopRegistry()


def run_supervised(
    state: LoopState,
    one_pass: Callable[[], object],
    stopped: threading.Event,
    *,
    wake: threading.Event | None = None,
    pause_s: float | None = None,
    first_pause: bool = True,
) -> None:
    """Run ``one_pass`` until ``stopped`` is set, ``pause_s`` apart (default: the loop's
    interval), surviving whatever it raises. ``wake`` (which ``stop`` must set too) cuts a
    pause short. The state leaves the registry when the loop ends."""
    pause = state.interval_s if pause_s is None else pause_s
    delay = pause if first_pause else 0.0
    waiter = wake or stopped
    try:
        while True:
            if delay > 0:
                waiter.wait(delay)
                if wake is not None:
                    wake.clear()
            if stopped.is_set():
                return
            try:
                one_pass()
            except Exception as exc:  # noqa: BLE001 - the point: no exception ends the loop
                if stopped.is_set():  # torn down under it while stopping
                    return
                delay = state.failed(exc)
            else:
                state.passed()
                delay = pause
    finally:
        LOOPS.unregister(state)
