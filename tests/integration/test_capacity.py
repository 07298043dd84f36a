"""Capacity signals per GPU class on GET /v1/queues and /metrics, for an autoscaler."""

from __future__ import annotations

import time

from tests.conftest import wait_for

JOB = "/v1/apps/lifecycle/jobs"


def _cpu(http) -> dict:
    [cpu] = [q for q in http.get("/v1/queues").json()["queues"] if q["gpu_class"] == "cpu"]
    return cpu


def test_queue_figures_and_desired_consumers(http, start_worker):
    for i in range(4):
        http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": f"w{i}"}})
    http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "d"}, "delay_seconds": 60})
    time.sleep(0.5)
    cpu = _cpu(http)
    assert (cpu["waiting"], cpu["delayed"], cpu["queued"], cpu["in_progress"]) == (4, 1, 5, 0)
    assert 0.5 <= cpu["oldest_waiting_s"] < 10
    assert (cpu["slots"], cpu["desired_consumers"], cpu["consumers"]) == (0, 4, [])
    metrics = http.get("/metrics").text
    labels = f'app="lifecycle",gpu_class="cpu",queue="{cpu["queue"]}"'
    assert f"jobcord_queue_desired_consumers{{{labels}}} 4.0" in metrics
    assert f"jobcord_queue_waiting{{{labels}}} 4.0" in metrics

    start_worker("tests.apps.lifecycle:app", "--concurrency", "2")
    drained = wait_for(lambda: (q := _cpu(http))["waiting"] == 0 and q, 20, "the queue to drain")
    assert drained["oldest_waiting_s"] == 0 and drained["delayed"] == 1
    http.post(f"{JOB}/slow/async_run_remote", json={"input": {"seconds": 5}})
    busy = wait_for(lambda: (q := _cpu(http))["in_progress"] == 1 and q, 20, "the slow job")
    assert busy["slots"] == 2 and busy["desired_consumers"] == 1 and len(busy["consumers"]) == 1
