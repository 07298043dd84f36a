"""Loop health across processes: each scheduler and consumer publishes its supervised loops
(``jobcord.scheduler.supervision``) to Redis; ``/healthz`` and ``jobcord health`` assess them.

A loop is **stale** when its last completed pass (or its start, before the first) is older
than ``max(3 x its interval, loop_stale_after_s)`` at the moment its process reported, or
when its latest pass raised (consecutive errors). A process may report **problems** of its
own besides its loops (a consumer whose job processes cannot start: ``children``). A process
is **silent** when its latest
report is older than ``max(3 x health_interval_s, loop_stale_after_s)``: it is stuck, or died
without removing its report (which then expires after twice that). Either makes the whole
deployment ``degraded``.

Hosts' clocks may disagree: a report's age is judged on Redis's clock (the ``seen_at`` Redis
stamps it with, against Redis's ``TIME``), its loops against their own process's clock (its
``published_at``); neither compares one host's clock with another's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from jobcord.storage.clock import seen_at
from jobcord.storage.health import ProcessHealthStore, WebhookBacklog
from jobcord.storage.settings import Settings

from .loops import EveryInterval
from .supervision import LOOPS

__all__ = [
    "HealthPublisher",
    "HealthReport",
    "Problem",
    "assess",
    "new_process_id",
    "silent_after_s",
]


def new_process_id(role: str) -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def silent_after_s(health_interval_s: float, stale_after_s: float) -> float:
    return max(3 * health_interval_s, stale_after_s)


class HealthPublisher(EveryInterval):
    """Publishes this process's loops every ``health_interval_s`` (itself one of them), and
    what ``problems()`` says is wrong with it besides (name -> reason; none: healthy)."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        role: str,
        process_id: str | None = None,
        info: dict[str, Any] | None = None,
        problems: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        super().__init__("health", settings.health_interval_s)
        self.problems = problems
        self.store = ProcessHealthStore(client, functions=settings.redis_functions)
        self.process_id = process_id or new_process_id(role)
        self.role = role
        self.info = info or {}
        self.started_at = time.time()
        silent = silent_after_s(settings.health_interval_s, settings.loop_stale_after_s)
        self.ttl_s = 2 * silent

    def report(self) -> dict[str, Any]:
        return {
            **self.info,
            "process": self.process_id,
            "role": self.role,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            # This host's clock, as are the loops' times; Redis adds seen_at on its own.
            "published_at": time.time(),
            "publish_interval_s": self.interval_s,
            "loops": [h.as_dict() for h in LOOPS.snapshot()],
            "problems": [
                {"name": name, "reason": reason}
                for name, reason in (self.problems() if self.problems else {}).items()
            ],
        }

    def run_once(self) -> None:
        self.store.publish(self.process_id, self.report(), self.ttl_s)

    def start(self) -> None:
        with contextlib.suppress(redis.RedisError):  # the loop publishes again soon
            self.run_once()
        super().start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop publishing and remove the report (a clean exit is not a silent process)."""
        self.stop()
        if self.is_alive():
            self.join(timeout_s)
        with contextlib.suppress(redis.RedisError):
            self.store.remove(self.process_id)


@dataclass(frozen=True)
class Problem:
    process: str
    role: str
    #: None: the whole process is silent; else one of its loops, or a problem it reported
    #: (``children``: a consumer's job processes cannot start).
    loop: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    processes: list[dict[str, Any]]
    problems: list[Problem] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "degraded" if self.problems else "ok"

    def as_dict(self) -> dict[str, Any]:
        roles: dict[str, int] = {}
        for p in self.processes:
            roles[p.get("role", "?")] = roles.get(p.get("role", "?"), 0) + 1
        return {
            "status": self.status,
            "processes": roles,
            "stale_loops": [p.as_dict() for p in self.problems],
        }


def loop_problem(loop: dict[str, Any], at: float, stale_after_s: float) -> str | None:
    """Why ``loop`` (as reported at ``at``) is stale, or None when it is healthy."""
    if loop.get("consecutive_errors"):
        return f"{loop['consecutive_errors']} consecutive errors; last: {loop.get('last_error')}"
    limit = max(3 * float(loop["interval_s"]), stale_after_s)
    last = loop.get("last_pass_at")
    age = at - float(last if last is not None else loop["started_at"])
    if age > limit:
        what = "no pass completed" if last is None else "last pass completed"
        return f"{what} {age:.1f} s before its process reported (limit {limit:.1f} s)"
    return None


def _missing_scheduler(
    report: HealthReport, webhooks: WebhookBacklog | None, stale_after_s: float, now: float
) -> None:
    """Webhooks overdue with no scheduler reporting: nothing will ever deliver them."""
    if webhooks is None or webhooks.oldest_due_at is None:
        return
    if any(p.get("role") == "scheduler" for p in report.processes):
        return  # a stuck one shows as its own problem
    overdue = now - webhooks.oldest_due_at
    if overdue > stale_after_s:
        reason = (
            f"no scheduler is running: {webhooks.due} webhook(s) due, the oldest for "
            f"{overdue:.0f} s (start `jobcord scheduler`)"
        )
        report.problems.append(Problem("-", "scheduler", "webhooks", reason))


def assess(
    processes: list[dict[str, Any]],
    *,
    stale_after_s: float,
    now: float | None = None,
    webhooks: WebhookBacklog | None = None,
) -> HealthReport:
    """The deployment's health at ``now``: Redis's clock (``ProcessHealthStore.now``), which
    the reports' ``seen_at`` are on (this host's clock when not given)."""
    now = time.time() if now is None else now
    report = HealthReport(sorted(processes, key=lambda p: (p.get("role", ""), p["process"])))
    _missing_scheduler(report, webhooks, stale_after_s, now)
    for proc in report.processes:
        pid, role = proc["process"], proc.get("role", "?")
        seen = seen_at(proc, "published_at")
        silence = now - (now if seen is None else seen)
        limit = silent_after_s(float(proc.get("publish_interval_s", 0)), stale_after_s)
        if silence > limit:
            reason = f"no health report for {silence:.1f} s (limit {limit:.1f} s)"
            report.problems.append(Problem(pid, role, None, reason))
            continue
        for loop in proc.get("loops", []):
            why = loop_problem(loop, float(proc["published_at"]), stale_after_s)
            if why is not None:
                report.problems.append(Problem(pid, role, loop["name"], why))
        for problem in proc.get("problems", []):
            report.problems.append(Problem(pid, role, problem["name"], problem["reason"]))
    return report
