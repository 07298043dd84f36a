"""The dead-letter view and retrying a request under the same id."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobcord.producers import JobFailed
from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs
from tests.conftest import ROOT


def test_failed_requests_are_listed_and_can_run_again(client, rds, start_worker, http, jobcord_env):
    start_worker()
    bad = jobs.flaky.async_run_remote("dlq", fail_times=3)  # 3 attempts, all fail
    with pytest.raises(JobFailed):
        bad.result(timeout=20)
    good = jobs.echo.async_run_remote(1)
    good.result(timeout=20)
    listed = http.get("/v1/requests", params={"status": "FAILED", "app": "lifecycle"}).json()
    assert [r["request_id"] for r in listed["requests"]] == [bad.request_id]
    cli = subprocess.run(
        [sys.executable, "-m", "jobcord.cli", "status", "--failed", "--app", "lifecycle"],
        cwd=ROOT,
        env={**os.environ, **jobcord_env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert bad.request_id in cli.stdout and "RuntimeError" in cli.stdout

    r = http.post(f"/v1/requests/{bad.request_id}/retry")
    assert r.status_code == 202 and r.json()["attempt"] == 4
    # Same id, same input: attempt 4 > fail_times, so it succeeds now.
    assert client.wait(bad.request_id, 20).status is Status.SUCCEEDED
    assert bad.result(timeout=5) == 4
    assert rds.get("jobcord:test:count:dlq") == "4"
    assert (
        http.get("/v1/requests", params={"status": "FAILED", "app": "lifecycle"}).json()["requests"]
        == []
    )
    assert rds.ttl(f"jobcord:req:{bad.request_id}") > 0  # finished again: retention again


def test_retry_refusals(client, http, start_worker):
    start_worker()
    done = jobs.echo.async_run_remote(2)
    done.result(timeout=20)
    r = http.post(f"/v1/requests/{done.request_id}/retry")
    assert r.status_code == 409 and "SUCCEEDED" in r.json()["detail"]
    running = jobs.slow.async_run_remote(5)
    assert http.post(f"/v1/requests/{running.request_id}/retry").status_code == 409
    assert http.post("/v1/requests/nope/retry").status_code == 404
    assert (
        http.get("/v1/requests", params={"status": "QUEUED", "app": "lifecycle"}).status_code == 422
    )
    assert http.get("/v1/requests", params={"status": "FAILED", "app": "other"}).status_code == 404
    running.cancel()


def test_waiters_follow_a_rerun_to_its_new_end(client, http, start_worker):
    start_worker()
    handle = jobs.flaky.async_run_remote("rerun-wait", fail_times=3)
    with pytest.raises(JobFailed):
        handle.result(timeout=20)
    http.post(f"/v1/requests/{handle.request_id}/retry")
    # Over HTTP too: run_remote-style waits and SSE end at the new terminal event, not the old.
    events = []
    with http.stream("GET", f"/v1/requests/{handle.request_id}/events") as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(line)
    assert '"SUCCEEDED"' in events[-1] and any('"FAILED"' in e for e in events)
