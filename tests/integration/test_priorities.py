"""Priorities really order waiting work within a queue, with a guard against starvation."""

from __future__ import annotations

from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs
from tests.conftest import wait_for


def _start_order(client, handles):
    records = [client.wait(h.request_id, 60) for h in handles]
    assert all(r.status is Status.SUCCEEDED for r in records)
    return [r.priority for r in sorted(records, key=lambda r: r.started_at)]


def test_waiting_requests_start_in_priority_order(client, start_worker):
    start_worker(env={"JOBCORD_PRIORITY_AGING_EVERY": "0"})  # strict order for this test
    blocker = jobs.slow.async_run_remote(1.0)
    wait_for(lambda: blocker.status().status is Status.IN_PROGRESS, 20, "the blocker to start")
    handles = [
        jobs.count.async_run_remote(f"p{p}-{i}", priority=p)
        for i in range(3)
        for p in (2, 1, 0)  # interleaved, lowest priority first
    ]
    assert _start_order(client, handles) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_low_priority_is_not_starved(client, start_worker):
    # Every 2nd fetch prefers the lowest level: priority 2 gets through despite waiting 0s.
    start_worker(env={"JOBCORD_PRIORITY_AGING_EVERY": "2"})
    blocker = jobs.slow.async_run_remote(1.0)
    wait_for(lambda: blocker.status().status is Status.IN_PROGRESS, 20, "the blocker to start")
    low = jobs.count.async_run_remote("low", priority=2)
    highs = [jobs.count.async_run_remote(f"high-{i}", priority=0) for i in range(6)]
    order = _start_order(client, [low, *highs])
    assert order.index(2) < 3  # not last: it started among the first few


def test_queue_counts_include_every_level(http):
    for p in (0, 1, 2):
        http.post(
            "/v1/apps/lifecycle/jobs/count/async_run_remote",
            json={"input": {"key": f"q{p}"}, "priority": p},
        )
    [cpu] = [q for q in http.get("/v1/queues").json()["queues"] if q["gpu_class"] == "cpu"]
    assert cpu["queued"] == 3
