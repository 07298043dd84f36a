"""Supervised loops survive what a pass raises, count it, back off, and report staleness."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import REGISTRY

from jobcord.scheduler.health import assess
from jobcord.scheduler.loops import EveryInterval
from jobcord.scheduler.supervision import LOOPS, LoopRegistry, LoopState
from tests.conftest import wait_for


def _errors(loop: str) -> float:
    return REGISTRY.get_sample_value("jobcord_loop_errors_total", {"loop": loop}) or 0.0


class Flaky(EveryInterval):
    """Raises on the passes listed in ``fail_on`` (1-based), else counts."""

    def __init__(self, name: str, fail_on: set[int], exc: BaseException) -> None:
        super().__init__(name, 0.01, backoff_max_s=0.05)
        self.fail_on = fail_on
        self.exc = exc
        self.calls = 0
        self.good = 0

    def run_once(self) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            raise self.exc
        self.good += 1


@pytest.mark.parametrize(
    "exc", [RuntimeError("boom"), KeyError("poisoned"), UnicodeEncodeError("ascii", "é", 0, 1, "x")]
)
def test_a_loop_survives_any_exception_and_counts_it(exc):
    loop = Flaky(f"flaky-{type(exc).__name__}", {2, 3}, exc)
    before = _errors(loop.state.name)
    loop.start()
    try:
        wait_for(lambda: loop.good >= 5, 5, "passes after the errors")
        assert loop.is_alive()
        health = loop.state.snapshot()
        assert health.errors_total == 2 and health.consecutive_errors == 0
        assert health.last_error.startswith(type(exc).__name__)
        assert health.last_pass_at is not None and health.last_pass_at > health.last_error_at
        assert _errors(loop.state.name) - before == 2
        assert LOOPS.get(loop.state.name) is loop.state
    finally:
        loop.stop()
        loop.join(5)
    assert not loop.is_alive()
    assert LOOPS.get(loop.state.name) is None  # a stopped loop is no longer reported


def test_backoff_doubles_and_is_capped():
    state = LoopState("backoff", 0.5, backoff_max_s=3.0)
    delays = [state.failed(RuntimeError("x")) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert state.snapshot().consecutive_errors == 6
    state.passed()
    assert state.snapshot().consecutive_errors == 0 and state.snapshot().errors_total == 6
    never_longer = LoopState("leases", 1.0, backoff_max_s=1.0)
    assert {never_longer.failed(RuntimeError("x")) for _ in range(4)} == {1.0}


def test_an_unreachable_redis_is_retried_within_a_second():
    import redis

    state = LoopState("maintenance", 0.2, backoff_max_s=10.0)
    down = [state.failed(redis.ConnectionError("refused")) for _ in range(6)]
    assert down == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]  # recovery runs as soon as it is back
    assert state.failed(redis.ResponseError("a bug")) == 10.0  # other errors back off long


def test_names_are_unique_per_process():
    registry = LoopRegistry()
    a = registry.register("cron", 1.0)
    b = registry.register("cron", 1.0)
    assert (a.name, b.name) == ("cron", "cron#2")
    registry.unregister(a)
    assert [h.name for h in registry.snapshot()] == ["cron#2"]


def test_a_loop_blocked_in_a_pass_keeps_its_last_pass_time():
    release = threading.Event()

    class Stuck(EveryInterval):
        passes = 0

        def run_once(self) -> None:
            Stuck.passes += 1
            if Stuck.passes == 3:
                release.wait(10)

    loop = Stuck("stuck-unit", 0.01)
    loop.start()
    try:
        wait_for(lambda: Stuck.passes == 3, 5, "the stuck pass")
        last = loop.state.snapshot().last_pass_at
        time.sleep(0.2)
        assert loop.state.snapshot().last_pass_at == last
    finally:
        release.set()
        loop.stop()
        loop.join(5)


def _proc(published_at: float, loops: list[dict], interval: float = 1.0) -> dict:
    return {
        "process": "scheduler:h:1:abc",
        "role": "scheduler",
        "published_at": published_at,
        "publish_interval_s": interval,
        "loops": loops,
    }


def _loop(name: str, last: float | None, errors: int = 0, interval: float = 0.5) -> dict:
    return {
        "name": name,
        "interval_s": interval,
        "started_at": 1000.0,
        "last_pass_at": last,
        "consecutive_errors": errors,
        "errors_total": errors,
        "last_error": "RuntimeError: x" if errors else None,
        "last_error_at": None,
    }


def test_assess_ok_stale_failing_and_silent():
    now = 2000.0
    healthy = _proc(now - 1, [_loop("maintenance", now - 1.5), _loop("health", now - 1)])
    assert assess([healthy], stale_after_s=10, now=now).as_dict() == {
        "status": "ok",
        "processes": {"scheduler": 1},
        "stale_loops": [],
    }
    stale = _proc(now - 1, [_loop("cron", now - 12), _loop("webhooks", now - 1, errors=2)])
    report = assess([stale], stale_after_s=10, now=now)
    assert report.status == "degraded"
    reasons = {p.loop: p.reason for p in report.problems}
    assert "last pass completed 11.0 s before" in reasons["cron"]
    assert reasons["webhooks"].startswith("2 consecutive errors; last: RuntimeError: x")
    # A loop's own interval counts when it is longer than the floor: 3 x 20 s.
    slow = _proc(now - 1, [_loop("hourly", now - 50, interval=20)])
    assert assess([slow], stale_after_s=10, now=now).status == "ok"
    never = _proc(now - 1, [_loop("new", None)])
    assert "no pass completed" in assess([never], stale_after_s=10, now=now).problems[0].reason
    silent = _proc(now - 31, [_loop("maintenance", now - 31)], interval=5)
    problem = assess([silent], stale_after_s=10, now=now).problems[0]
    assert problem.loop is None and "no health report for 31.0 s" in problem.reason


def test_overdue_webhooks_without_a_scheduler_are_a_problem():
    from jobcord.storage.health import WebhookBacklog

    now = 2000.0
    consumer = {**_proc(now - 1, [_loop("leases", now - 1)]), "role": "consumer"}
    overdue = WebhookBacklog(3, now - 40)
    report = assess([consumer], stale_after_s=10, now=now, webhooks=overdue)
    assert report.status == "degraded"
    (problem,) = report.problems
    assert problem.role == "scheduler" and "no scheduler is running: 3 webhook(s) due" in (
        problem.reason
    )
    # Just due (a scheduler has up to the stale limit to take it), or a scheduler alive: fine.
    fresh = WebhookBacklog(3, now - 5)
    assert assess([consumer], stale_after_s=10, now=now, webhooks=fresh).status == "ok"
    scheduler = _proc(now - 1, [_loop("webhooks", now - 1)])
    assert assess([scheduler], stale_after_s=10, now=now, webhooks=overdue).status == "ok"
    assert (
        assess([consumer], stale_after_s=10, now=now, webhooks=WebhookBacklog(0, None)).status
        == "ok"
    )
