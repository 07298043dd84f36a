"""Prometheus metrics of a consumer: its own figures and those of its child processes.

Children run and end their attempts themselves, so they count them (:class:`JobCounts`) and
send their totals to the parent now and then (``protocol.Stats``, cumulative: a message lost
with a dying child costs at most its last second). The parent serves the sum through
:class:`ConsumerCollector`, with the running gauge read live off the board.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .protocol import Stats

__all__ = ["CHILD_RESTARTS", "RUN_BUCKETS", "JobCounts", "ConsumerCollector"]

CHILD_RESTARTS = Counter(
    "jobcord_child_restarts_total", "Job processes replaced, by first word of why", ["slot", "why"]
)
#: Upper bounds (s) of the run-time histogram's buckets.
RUN_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200)


class JobCounts:
    """Finished attempts by (app, job, status) and run times by (app, job), cumulative."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finished: dict[tuple[str, str, str], int] = {}
        self._buckets: dict[tuple[str, str], list[int]] = {}  # per bucket, +Inf last
        self._sum: dict[tuple[str, str], float] = {}
        self.changed = False

    def finished(self, app: str, job: str, status: str) -> None:
        key = (app, job, status)
        with self._lock:
            self._finished[key] = self._finished.get(key, 0) + 1
            self.changed = True

    def ran(self, app: str, job: str, seconds: float) -> None:
        key = (app, job)
        with self._lock:
            buckets = self._buckets.get(key)
            if buckets is None:
                buckets = self._buckets[key] = [0] * (len(RUN_BUCKETS) + 1)
            buckets[bisect.bisect_left(RUN_BUCKETS, seconds)] += 1
            self._sum[key] = self._sum.get(key, 0.0) + seconds
            self.changed = True

    def snapshot(self) -> Stats:
        with self._lock:
            return self._stats()

    def news(self) -> Stats | None:
        """The totals, if they changed since the last call (what a child sends its parent)."""
        with self._lock:
            if not self.changed:
                return None
            self.changed = False
            return self._stats()

    def _stats(self) -> Stats:
        return Stats(
            dict(self._finished), {k: list(v) for k, v in self._buckets.items()}, dict(self._sum)
        )

    def add(self, stats: Stats) -> None:
        """Fold in another process's totals (a child that exited)."""
        with self._lock:
            _merge(self._finished, self._buckets, self._sum, stats)


def _merge(
    finished: dict[tuple[str, str, str], int],
    buckets: dict[tuple[str, str], list[int]],
    sums: dict[tuple[str, str], float],
    stats: Stats,
) -> None:
    for outcome, n in stats.finished.items():
        finished[outcome] = finished.get(outcome, 0) + n
    for job, counts in stats.run_buckets.items():
        mine = buckets.setdefault(job, [0] * len(counts))
        for i, n in enumerate(counts):
            mine[i] += n
    for job, total in stats.run_sum.items():
        sums[job] = sums.get(job, 0.0) + total


class ConsumerCollector:
    """What a consumer serves on its metrics port: its own counts, the latest totals of each
    live child, the final totals of children gone, and the attempts running now."""

    def __init__(
        self,
        own: JobCounts,
        children: Callable[[], Iterable[Stats]],
        running: Callable[[], dict[tuple[str, str], int]],
    ) -> None:
        self._own = own
        self._children = children
        self._running = running

    def collect(self) -> Iterator[Any]:
        finished: dict[tuple[str, str, str], int] = {}
        buckets: dict[tuple[str, str], list[int]] = {}
        sums: dict[tuple[str, str], float] = {}
        for stats in [self._own.snapshot(), *self._children()]:
            _merge(finished, buckets, sums, stats)
        done = CounterMetricFamily(
            "jobcord_requests_finished",
            "Attempts that ended, by outcome",
            labels=["app", "job", "status"],
        )
        for outcome, n in sorted(finished.items()):
            done.add_metric(list(outcome), n)
        yield done
        seconds = HistogramMetricFamily(
            "jobcord_request_run_seconds",
            "Time from the start of an attempt to its recorded outcome",
            labels=["app", "job"],
        )
        for job, counts in sorted(buckets.items()):
            cumulative, total = [], 0
            for bound, n in zip([*map(str, RUN_BUCKETS), "+Inf"], counts, strict=True):
                total += n
                cumulative.append((bound, total))
            seconds.add_metric(list(job), cumulative, sums.get(job, 0.0))
        yield seconds
        running = GaugeMetricFamily(
            "jobcord_requests_running", "Attempts running now", labels=["app", "job"]
        )
        for job, n in sorted(self._running().items()):
            running.add_metric(list(job), n)
        yield running
