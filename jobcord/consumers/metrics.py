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

from .gpu_readings import GpuReading
from .protocol import Stats

__all__ = [
    "CHILD_RESTARTS",
    "SELF_FENCED",
    "GPU_LEFTOVERS",
    "HISTOGRAMS",
    "JobCounts",
    "ConsumerCollector",
]

CHILD_RESTARTS = Counter(
    "jobcord_child_restarts_total", "Job processes replaced, by first word of why", ["slot", "why"]
)
SELF_FENCED = Counter(
    "jobcord_self_fenced_attempts_total",
    "Attempts ended by their consumer because it could not renew their lease for a whole TTL",
)
GPU_LEFTOVERS = Counter(
    "jobcord_gpu_leftover_processes_total",
    "Processes NVML showed holding memory on a device after its job tree ended: killed (of "
    "this consumer) or foreign (not ours: left alone)",
    ["device", "outcome"],
)
#: The histograms children keep per (app, job): metric name, help, bucket upper bounds.
HISTOGRAMS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "run": (
        "jobcord_request_run_seconds",
        "Time from the start of an attempt to its recorded outcome",
        (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200),
    ),
    "batch_size": (
        "jobcord_batch_size",
        "Requests in one call of a batched job",
        (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    ),
    "batch_wait": (
        "jobcord_batch_wait_seconds",
        "How long a batch's first request waited in the consumer for the others",
        (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5, 10),
    ),
}


class JobCounts:
    """Finished attempts by (app, job, status); histograms by (name, app, job): cumulative."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._finished: dict[tuple[str, str, str], int] = {}
        self._hist: dict[tuple[str, str, str], list[float]] = {}  # counts per bucket, then sum
        self.changed = False

    def finished(self, app: str, job: str, status: str) -> None:
        key = (app, job, status)
        with self._lock:
            self._finished[key] = self._finished.get(key, 0) + 1
            self.changed = True

    def ran(self, app: str, job: str, seconds: float) -> None:
        self.observe("run", app, job, seconds)

    def observe(self, name: str, app: str, job: str, value: float) -> None:
        bounds = HISTOGRAMS[name][2]
        key = (name, app, job)
        with self._lock:
            cells = self._hist.get(key)
            if cells is None:
                cells = self._hist[key] = [0.0] * (len(bounds) + 2)  # +Inf bucket, sum
            cells[bisect.bisect_left(bounds, value)] += 1
            cells[-1] += value
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
        return Stats(dict(self._finished), {k: list(v) for k, v in self._hist.items()})

    def add(self, stats: Stats) -> None:
        """Fold in another process's totals (a child that exited)."""
        with self._lock:
            _merge(self._finished, self._hist, stats)


def _merge(
    finished: dict[tuple[str, str, str], int],
    hist: dict[tuple[str, str, str], list[float]],
    stats: Stats,
) -> None:
    for outcome, n in stats.finished.items():
        finished[outcome] = finished.get(outcome, 0) + n
    for key, cells in stats.histograms.items():
        mine = hist.setdefault(key, [0.0] * len(cells))
        for i, value in enumerate(cells):
            mine[i] += value


class ConsumerCollector:
    """What a consumer serves on its metrics port: its own counts, the latest totals of each
    live child, the final totals of children gone, and the attempts running now."""

    def __init__(
        self,
        own: JobCounts,
        children: Callable[[], Iterable[Stats]],
        running: Callable[[], dict[tuple[str, str], int]],
        processes: Callable[[], list[dict[str, Any]]] = list,
        gpus: Callable[[], list[GpuReading]] = list,
        app: str = "",
    ) -> None:
        self._app = app
        self._own = own
        self._children = children
        self._running = running
        self._processes = processes
        self._gpus = gpus

    def collect(self) -> Iterator[Any]:
        finished: dict[tuple[str, str, str], int] = {}
        hist: dict[tuple[str, str, str], list[float]] = {}
        for stats in [self._own.snapshot(), *self._children()]:
            _merge(finished, hist, stats)
        done = CounterMetricFamily(
            "jobcord_requests_finished",
            "Attempts that ended, by outcome",
            labels=["app", "job", "status"],
        )
        for outcome, total_n in sorted(finished.items()):
            done.add_metric(list(outcome), total_n)
        yield done
        for name, (metric, text, bounds) in HISTOGRAMS.items():
            family = HistogramMetricFamily(metric, text, labels=["app", "job"])
            for (kind, app, job), cells in sorted(hist.items()):
                if kind != name:
                    continue
                cumulative: list[tuple[str, float]] = []
                total = 0.0
                for bound, count in zip([*map(str, bounds), "+Inf"], cells[:-1], strict=True):
                    total += count
                    cumulative.append((bound, total))
                family.add_metric([app, job], cumulative, cells[-1])
            yield family
        running = GaugeMetricFamily(
            "jobcord_requests_running", "Attempts running now", labels=["app", "job"]
        )
        for app_job, n in sorted(self._running().items()):
            running.add_metric(list(app_job), n)
        yield running
        yield from self._process_figures()
        yield from self._gpu_figures()

    def _process_figures(self) -> Iterator[Any]:
        states = GaugeMetricFamily(
            "jobcord_child_processes", "Job processes by state", labels=["app", "state"]
        )
        jobs = CounterMetricFamily(
            "jobcord_child_jobs",
            "Jobs each live job process has finished",
            labels=["app", "child"],
        )
        counts: dict[str, int] = {}
        for child in self._processes():
            counts[child["state"]] = counts.get(child["state"], 0) + 1
            if child["state"] != "gone":
                jobs.add_metric([self._app, child["name"]], child["jobs_done"])
        for state, n in sorted(counts.items()):
            states.add_metric([self._app, state], n)
        yield states
        yield jobs

    def _gpu_figures(self) -> Iterator[Any]:
        labels = ["uuid", "name", "gpu_class"]
        total = GaugeMetricFamily("jobcord_gpu_memory_total_bytes", "GPU memory", labels=labels)
        used = GaugeMetricFamily(
            "jobcord_gpu_memory_used_bytes", "GPU memory in use (all processes)", labels=labels
        )
        util = GaugeMetricFamily(
            "jobcord_gpu_utilization_ratio",
            "Share of the last sample period a kernel ran on the GPU (0..1)",
            labels=labels,
        )
        for r in self._gpus():
            names = [r.uuid, r.name, r.gpu_class or ""]
            total.add_metric(names, r.memory_total_bytes)
            if r.memory_used_bytes is not None:
                used.add_metric(names, r.memory_used_bytes)
            if r.utilization is not None:
                util.add_metric(names, r.utilization)
        yield from (total, used, util)
