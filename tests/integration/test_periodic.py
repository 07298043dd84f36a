"""Delayed (eta) and periodic (cron) work: each tick fires once, even with racing schedulers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from jobcord.scheduler.cron import CronTicker, previous_tick
from jobcord.storage.keys import cron_key
from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs

JOB = "every_two_seconds"


def test_eta_holds_a_request_until_then(client, start_worker):
    start_worker()
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    handle = jobs.count.async_run_remote("eta", eta=at)
    rec = handle.wait(20)
    assert rec.status is Status.SUCCEEDED
    assert rec.started_at >= at.timestamp() - 0.05


def test_eta_must_be_aware_and_alone(client):
    with pytest.raises(ValueError, match="timezone-aware"):
        jobs.count.async_run_remote("x", eta=datetime.now())
    with pytest.raises(ValueError, match="not both"):
        jobs.count.async_run_remote("x", eta=time.time(), delay_seconds=1)


def test_eta_over_http(http, start_worker):
    start_worker()
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    resp = http.post(
        "/v1/apps/lifecycle/jobs/count/async_run_remote", json={"input": {"key": "k"}, "eta": at}
    )
    assert resp.status_code == 202, resp.text
    rec = http.get(f"/v1/requests/{resp.json()['request_id']}").json()
    assert rec["status"] == "QUEUED"
    assert rec["retry_at"] >= datetime.fromisoformat(at).timestamp() - 0.01
    naive = http.post(
        "/v1/apps/lifecycle/jobs/count/async_run_remote",
        json={"input": {"key": "k"}, "eta": "2030-01-01T00:00:00"},
    )
    assert naive.status_code == 422 and "eta" in naive.text


def test_bad_schedules_are_refused_at_declaration():
    from jobcord.producers import App, InputValidationError

    app = App("cron-bad")
    with pytest.raises(ValueError, match="not a valid cron"):
        app.job(schedule="every tuesday")(lambda: None)
    with pytest.raises(InputValidationError, match="n"):

        @app.job(schedule="*/5 * * * *", schedule_input={"n": "many"})
        def needs_int(n: int) -> int:
            return n


def test_ticks_fire_once_and_missed_ticks_coalesce(client, rds):
    ticker = CronTicker([jobs.app], client.store, interval_s=1, grace_s=5)
    now = 1_900_000_001.0  # an odd second: the last tick was 1_900_000_000
    assert ticker.run_once(now) == []  # a new schedule starts from now
    assert float(rds.hget(cron_key(), f"lifecycle:{JOB}")) == 1_900_000_000.0
    # Three ticks pass unseen: only the latest fires, once, even when asked again.
    fired = ticker.run_once(now + 6)
    assert [(f.tick, f.outcome) for f in fired] == [(1_900_000_006.0, "submitted")]
    assert ticker.run_once(now + 6) == []
    # Another scheduler that read an older mark submits the same tick: same request.
    rds.hset(cron_key(), f"lifecycle:{JOB}", "1900000000.0")
    again = CronTicker([jobs.app], client.store, interval_s=1, grace_s=5).run_once(now + 6)
    assert again[0].outcome == "existing" and again[0].request_id == fired[0].request_id
    # The latest missed tick is older than the grace: skipped, nothing is submitted.
    strict = CronTicker([jobs.app], client.store, interval_s=1, grace_s=0.5)
    skipped = strict.run_once(now + 61)  # the latest tick, now + 59, is 2 s old
    assert [(f.tick, f.outcome, f.request_id) for f in skipped] == [(now + 59, "skipped", None)]
    assert strict.run_once(now + 61) == []
    rec = client.get(fired[0].request_id)
    assert rec.metadata == {"scheduled_for": "2030-03-17T17:46:46+00:00"}


def test_two_schedulers_fire_each_tick_exactly_once(client, rds, start_worker, start_scheduler):
    start_worker()
    start_scheduler("tests.apps.lifecycle:app")
    start_scheduler("tests.apps.lifecycle:app")
    time.sleep(7.5)
    ran = rds.lrange("jobcord:test:ticks:every-2s", 0, -1)
    assert len(ran) >= 2, ran
    assert len(set(ran)) == len(ran)
    ticks = [client.get(rid).metadata["scheduled_for"] for rid in ran]
    assert len(set(ticks)) == len(ticks), ticks  # one request per tick
    stamps = sorted(datetime.fromisoformat(t).timestamp() for t in ticks)
    assert all(b - a == 2 for a, b in zip(stamps, stamps[1:], strict=False)), stamps
    assert previous_tick("* * * * * */2", time.time()) - stamps[-1] <= 2
