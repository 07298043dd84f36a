"""Supervised loops against real Redis: a fault injected into each loop is logged, counted and
survived; a stuck loop or a stuck process turns /healthz and `jobcord health` degraded."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest

from jobcord.consumers.leases import LeaseKeeper
from jobcord.scheduler.cron import CronTicker, previous_tick
from jobcord.scheduler.health import HealthPublisher
from jobcord.scheduler.loops import EveryInterval
from jobcord.scheduler.maintenance import MaintenanceLoop
from jobcord.storage.keys import cancels_channel, cron_key, idempotency_key
from jobcord.storage.settings import load_settings
from tests.apps import lifecycle as jobs
from tests.conftest import ApiServer, health_cli, terminate, wait_for

JOB = "every_two_seconds"
FAST_HEALTH = {"JOBCORD_HEALTH_INTERVAL_S": "0.2", "JOBCORD_LOOP_STALE_AFTER_S": "1.5"}


def test_cron_survives_a_tick_whose_key_was_taken_with_another_input(client, rds):
    from jobcord.producers import ReservedIdempotencyKey

    spec = jobs.app.spec(JOB)
    ticker = CronTicker([jobs.app], client.store, interval_s=0.1, grace_s=5)
    ticker.run_once()  # a new schedule starts from now
    nxt = previous_tick(spec.schedule, time.time()) + 2
    key = f"jobcord-cron:{JOB}:{nxt:.0f}"
    with pytest.raises(ReservedIdempotencyKey):  # a client can no longer take it...
        jobs.every_two_seconds.async_run_remote(key="mine", idempotency_key=key)
    # ...but one that got in first (before the rule, or with Redis access) poisons the tick.
    client.store.submit(spec.new_request({"key": "someone-else"}, idempotency_key=key))
    ticker.start()
    try:
        after = idempotency_key("lifecycle", f"jobcord-cron:{JOB}:{nxt + 2:.0f}")
        wait_for(lambda: rds.exists(after), 10, "the tick after the poisoned one")
        # The ticker submits a tick, then moves its cursor: wait for the second step too.
        cursor = f"lifecycle:{JOB}"
        wait_for(lambda: float(rds.hget(cron_key(), cursor)) >= nxt + 2, 5, "the cursor to move on")
        health = ticker.state.snapshot()
        assert ticker.is_alive() and health.errors_total == 1
        assert "IdempotencyConflict" in health.last_error and health.consecutive_errors == 0
    finally:
        ticker.stop()
        ticker.join(5)


def test_maintenance_survives_a_pass_that_raises(client):
    store = client.store
    real, calls = store.recover, []

    def recover():  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise ZeroDivisionError("a bug in one pass")
        return real()

    store.recover = recover  # type: ignore[method-assign]
    loop = MaintenanceLoop(store, 0.02)
    loop.start()
    try:
        wait_for(lambda: len(calls) >= 5, 10, "passes after the error")
        health = loop.state.snapshot()
        assert loop.is_alive() and health.errors_total == 1
        assert health.last_error == "ZeroDivisionError: a bug in one pass"
    finally:
        loop.stop()
        loop.join(5)


def test_lease_renewal_survives_a_pass_that_raises(client):
    store = client.store
    beats: list[float] = []
    real_renew, renewals = store.renew, []

    def renew(leases):  # type: ignore[no-untyped-def]
        renewals.append(1)
        if len(renewals) == 2:
            raise KeyError("poisoned lease")
        return real_renew(leases)

    store.renew = renew  # type: ignore[method-assign]
    keeper = LeaseKeeper(
        store, 0.15, dict, lambda *_: None, heartbeat=lambda: beats.append(time.time())
    )
    keeper.start()
    try:
        wait_for(lambda: len(beats) >= 4, 10, "heartbeats after the failed renewal")
        health = keeper.renew_state.snapshot()
        assert health.errors_total == 1 and "poisoned lease" in health.last_error
        assert all(t.is_alive() for t in keeper._threads)
    finally:
        keeper.stop()
        for t in keeper._threads:
            t.join(5)


def test_cancel_listener_survives_a_failing_subscribe_and_a_failing_stop(client, rds):
    store = client.store
    real_pubsub, subscribes = store.client.pubsub, []

    def pubsub(**kw):  # type: ignore[no-untyped-def]
        subscribes.append(1)
        if len(subscribes) == 1:
            raise TypeError("a bug while subscribing")
        return real_pubsub(**kw)

    store.client.pubsub = pubsub  # type: ignore[method-assign]
    stopped: list[str] = []

    def stop(request_id: str, token: str | None, reason: str) -> None:
        if request_id == "bad":
            raise RuntimeError(f"cannot stop ({reason})")
        if request_id == "good":
            stopped.append(reason)

    # Renewal every 200 s: only the listener acts here.
    keeper = LeaseKeeper(store, 600.0, dict, stop)
    keeper.start()
    try:
        # Pub/sub ignores the database: other tests' consumers may be subscribed too, so
        # wait for this keeper's own subscription, then publish until it has heard one.
        wait_for(lambda: keeper._pubsub is not None, 10, "the keeper's subscription")
        assert keeper.cancel_state.snapshot().errors_total == 1  # the failed subscribe

        def heard_bad() -> bool:
            rds.publish(cancels_channel(), "bad")
            time.sleep(0.05)
            return keeper.cancel_state.snapshot().errors_total >= 2

        wait_for(heard_bad, 10, "the error")
        rds.publish(cancels_channel(), "good")
        wait_for(lambda: stopped == ["cancel"], 10, "the next cancel")
        health = keeper.cancel_state.snapshot()
        assert "cannot stop (cancel)" in health.last_error and health.consecutive_errors == 0
        assert all(t.is_alive() for t in keeper._threads)
    finally:
        keeper.stop()
        for t in keeper._threads:
            t.join(5)


def _fetch_loop(rds, worker) -> dict | None:
    """The "fetch" loop of ``worker`` as its consumer last published it."""
    raw = rds.get(f"jobcord:health:{worker.worker_id}")
    loops = json.loads(raw)["loops"] if raw else []
    return next((loop for loop in loops if loop["name"] == "fetch"), None)


def test_a_childs_fetch_loop_counts_a_pass_that_raises_and_goes_on(client, rds, start_worker):
    # The priority-0 list is not a list: every fetch meets WRONGTYPE until it is removed.
    poisoned = "jobcord.dq:jobcord.lifecycle.cpu.p0"
    rds.set(poisoned, "not a list")
    worker = start_worker(env=FAST_HEALTH)
    wait_for(
        lambda: (loop := _fetch_loop(rds, worker)) and loop["consecutive_errors"] >= 2,
        15,
        "the failed fetches in the consumer's health",
    )
    assert "WRONGTYPE" in _fetch_loop(rds, worker)["last_error"]
    rds.delete(poisoned)
    assert jobs.echo.run_remote(5)["x"] == 5  # the child's loop went on
    wait_for(
        lambda: _fetch_loop(rds, worker)["consecutive_errors"] == 0,
        15,
        "a clean pass after the errors",
    )
    assert _fetch_loop(rds, worker)["errors_total"] >= 2


class Stuck(EveryInterval):
    """A loop whose third pass blocks until released (a hung call, a deadlock)."""

    def __init__(self) -> None:
        super().__init__("stuck", 0.05)
        self.passes = 0
        self.release = threading.Event()

    def run_once(self) -> None:
        self.passes += 1
        if self.passes == 3:
            self.release.wait(30)


def test_health_reports_live_processes_and_turns_degraded_for_stuck_ones(
    jobcord_env, start_scheduler, start_worker, monkeypatch
):
    env = {**jobcord_env, **FAST_HEALTH}
    for k, v in FAST_HEALTH.items():
        monkeypatch.setenv(k, v)
    api = ApiServer(env, [])
    try:
        sched = start_scheduler(**FAST_HEALTH)
        start_worker(env=FAST_HEALTH)

        def healthz() -> dict:
            return httpx.get(f"{api.url}/healthz", timeout=5).json()

        wait_for(lambda: healthz()["processes"] == {"consumer": 1, "scheduler": 1}, 20, "both")
        now = healthz()
        assert now["status"] == "ok", now
        ok = health_cli(env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        for loop in ("maintenance", "webhooks", "health", "leases", "cancels"):
            assert loop in ok.stdout

        # A stopped (stuck) scheduler process: its reports stop, it turns silent.
        os.kill(sched.pid, signal.SIGSTOP)
        try:
            body = wait_for(lambda: (h := healthz())["status"] == "degraded" and h, 10, "silent")
            [problem] = body["stale_loops"]
            assert problem["role"] == "scheduler" and problem["loop"] is None
            assert "no health report" in problem["reason"]
            bad = health_cli(env)
            assert bad.returncode == 1 and "SILENT" in bad.stdout, bad.stdout + bad.stderr
        finally:
            os.kill(sched.pid, signal.SIGCONT)
        wait_for(lambda: healthz()["status"] == "ok", 10, "healthy again")

        # A live process with one stuck loop: that loop is named.
        settings = load_settings()
        stuck = Stuck()
        publisher = HealthPublisher(
            _redis(jobcord_env), settings, role="scheduler", process_id="scheduler:test:stuck"
        )
        stuck.start()
        publisher.start()
        try:
            body = wait_for(
                lambda: (h := healthz())["status"] == "degraded" and h, 10, "the stuck loop"
            )
            [problem] = body["stale_loops"]
            assert (problem["process"], problem["loop"]) == ("scheduler:test:stuck", "stuck")
            assert "last pass completed" in problem["reason"]
            assert healthz()["processes"] == {"consumer": 1, "scheduler": 2}
            # The CLI too (a new process: on a loaded machine, ask until its view is as fresh).
            wait_for(lambda: health_cli(env).returncode == 1, 20, "the CLI to say degraded")
        finally:
            stuck.release.set()
            stuck.stop()
            publisher.close()
        wait_for(lambda: healthz()["status"] == "ok", 10, "the stuck loop's process gone")
    finally:
        api.stop()


def test_health_without_redis_is_one_line_and_exit_2(jobcord_env):
    down = health_cli({**jobcord_env, "JOBCORD_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 2
    assert "cannot reach Redis" in down.stderr and "Traceback" not in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1


def test_a_stopped_process_removes_its_report(jobcord_env, start_scheduler, rds):
    sched = start_scheduler(**FAST_HEALTH)
    wait_for(lambda: rds.smembers("jobcord:health"), 20, "a report")
    terminate(sched)
    assert not rds.smembers("jobcord:health") and not list(rds.scan_iter("jobcord:health:*"))


def _redis(env: dict[str, str]):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(env["JOBCORD_REDIS_URL"], decode_responses=True)


@pytest.fixture
def loopback_webhooks(monkeypatch):
    monkeypatch.setenv("JOBCORD_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("JOBCORD_WEBHOOK_SECRET", "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


def test_a_webhook_backlog_with_no_scheduler_turns_health_degraded(
    loopback_webhooks, client, jobcord_env, start_worker, start_scheduler
):
    start_worker()
    handle = jobs.echo.async_run_remote(1, webhook_endpoint="http://127.0.0.1:9/never")
    handle.result(timeout=20)
    env = {**jobcord_env, "JOBCORD_LOOP_STALE_AFTER_S": "0.5"}
    time.sleep(0.6)
    done = health_cli(env)
    assert done.returncode == 1, done.stdout
    assert "no scheduler is running: 1 webhook(s) due" in done.stdout
    # A scheduler takes the backlog over (its delivery fails here and is retried later).
    start_scheduler()
    wait_for(lambda: "no scheduler is running" not in health_cli(env).stdout, 20, "the scheduler")
