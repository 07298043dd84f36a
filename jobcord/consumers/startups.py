"""Failed start-ups of a consumer's job processes: the back-off, and what health says.

A process fails its start-up when its on_startup (or the app's import) raises, when it exits
before it said Ready (``os._exit`` at import, a crash in a native library), or when it takes
longer than ``JOBCORD_CHILD_STARTUP_TIMEOUT_S``. On a consumer's first start that ends the
consumer with the error (``jobcord.consumers.supervisor``); a place whose process started
before and fails now is a crash loop: it is started again after a pause doubling from 1 s to
30 s, it is no serving capacity meanwhile (the registration counts ready processes only), and
the consumer's health report says degraded, e.g. ``2 of 2 job processes cannot start: child
exited with code 3 during start-up (5 times in 62 s)``, until one says Ready again.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

__all__ = [
    "BACKOFF_S",
    "StartFailures",
    "exit_reason",
    "startup_failed_reason",
    "children_problem",
]

#: The pause before a place whose start-up failed is tried again: first, longest.
BACKOFF_S = (1.0, 30.0)


@dataclass
class StartFailures:
    """One place's start-ups that failed in a row (reset when a process says Ready)."""

    count: int = 0
    first_at: float | None = None  # monotonic, the first failure of this run
    last: str | None = None  # why the latest failed

    def failed(self, why: str, now: float) -> float:
        """Count a failure; returns the pause before the next try."""
        self.count += 1
        if self.first_at is None:
            self.first_at = now
        self.last = why
        return self.backoff_s()

    def backoff_s(self) -> float:
        first, longest = BACKOFF_S
        return min(longest, first * 2 ** min(self.count - 1, 30)) if self.count else 0.0

    def cleared(self) -> None:
        self.count, self.first_at, self.last = 0, None, None

    def describe(self, now: float) -> str:
        why = self.last or "start-up failed"
        if self.count < 2 or self.first_at is None:
            return why
        return f"{why} ({self.count} times in {max(1.0, now - self.first_at):.0f} s)"


def exit_reason(code: int | None) -> str:
    """Why a process that exited before it said Ready failed, from its exit code."""
    if code is None:
        return "child vanished during start-up"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"child killed by {name} during start-up"
    return f"child exited with code {code} during start-up"


def startup_failed_reason(traceback: str) -> str:
    """One line from a child's ``StartupFailed``: the exception its traceback ends with."""
    lines = [line.strip() for line in traceback.strip().splitlines() if line.strip()]
    return f"start-up failed: {lines[-1] if lines else 'no detail'}"[:300]


def children_problem(failing: list[StartFailures], total: int, now: float) -> str | None:
    """What health says of a consumer whose places in ``failing`` (of ``total``) cannot
    start; None when none fails."""
    if not failing:
        return None
    worst = max(failing, key=lambda f: f.count)
    return f"{len(failing)} of {total} job processes cannot start: {worst.describe(now)}"
