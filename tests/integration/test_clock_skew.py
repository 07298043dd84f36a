"""Hosts whose clocks disagree with Redis's: health and an absolute ``eta`` go by Redis's clock.

A skewed host is simulated on the test side only: a worker or API process gets a
``sitecustomize.py`` on its ``PYTHONPATH`` that shifts ``time.time`` / ``time.time_ns`` by
``SKEW_S`` (its job processes inherit it, as on a whole skewed machine); an in-process client
is skewed with ``monkeypatch``. Redis runs on this machine's (true) clock.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from jobcord.scheduler.health import assess
from jobcord.storage.health import ProcessHealthStore
from jobcord.storage.registry import ConsumerRegistry, with_heartbeat_ages
from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs
from tests.conftest import ApiServer, health_cli, wait_for

JOB = "/v1/apps/lifecycle/jobs"
#: Reports every 0.5 s; a process is SILENT 3 s after its last one, gone 6 s after it.
FAST_HEALTH = {"JOBCORD_HEALTH_INTERVAL_S": "0.5", "JOBCORD_LOOP_STALE_AFTER_S": "3"}
_SHIM = """\
import os
import time

_skew_s = float(os.environ.get("SKEW_S", "0"))
_time, _time_ns = time.time, time.time_ns
time.time = lambda: _time() + _skew_s
time.time_ns = lambda: _time_ns() + int(_skew_s * 1e9)
"""


def skewed_env(tmp_path: Path, skew_s: float) -> dict[str, str]:
    """The environment of a process (and its children) whose clock is ``skew_s`` off."""
    shim = tmp_path / "skew"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(_SHIM)
    path = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "SKEW_S": str(skew_s)}


def test_the_shim_skews_the_clock_of_its_process(tmp_path):
    env = {**os.environ, **skewed_env(tmp_path, 90)}
    code = "import time; print(time.time())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert 89 < float(out.stdout) - time.time() < 91, out.stderr


@pytest.mark.parametrize("skew_s", [90.0, -90.0])
def test_a_worker_with_a_skewed_clock_is_healthy_then_silent_when_stopped(
    skew_s, tmp_path, jobcord_env, api_key, client, start_worker
):
    env = {**jobcord_env, **FAST_HEALTH}
    api = ApiServer(env, [])
    try:
        http = httpx.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )
        worker = start_worker(env={**FAST_HEALTH, **skewed_env(tmp_path, skew_s)})

        def healthz() -> dict:
            return http.get("/healthz").json()

        wait_for(lambda: healthz()["processes"] == {"consumer": 1}, 20, "the worker's report")
        assert jobs.echo.run_remote(3)["x"] == 3  # it serves, skewed
        time.sleep(3.5)  # longer than the silent limit: a report of now is not a stale one
        body = healthz()
        assert body["status"] == "ok", body
        cli = health_cli(env)
        assert cli.returncode == 0 and "SILENT" not in cli.stdout, cli.stdout + cli.stderr
        assert "ok" in cli.stdout
        # Its loops' last passes, moved onto Redis's clock: seconds ago, not skew_s.
        ages = [float(a) for a in re.findall(r"(\d+\.\d) s ago", cli.stdout)]
        assert ages and max(ages) < 5, cli.stdout
        queues = http.get("/v1/queues").json()
        assert "queues" in queues, queues
        [cpu] = [q for q in queues["queues"] if q["gpu_class"] == "cpu"]
        [consumer] = cpu["consumers"]
        assert consumer["worker"] == worker.worker_id and consumer["slots"] == 1
        assert consumer["stale"] is False and 0 <= consumer["heartbeat_age_s"] < 1.5, consumer

        # Stopped, it turns silent after 3 s of Redis's clock, whichever way its own is off.
        worker.freeze()
        try:
            stopped = time.monotonic()
            body = wait_for(
                lambda: (h := healthz())["status"] == "degraded" and h, 6, "the frozen worker"
            )
            assert time.monotonic() - stopped > 2.5
            [problem] = body["stale_loops"]
            assert problem["role"] == "consumer" and problem["loop"] is None
            assert "no health report" in problem["reason"]
        finally:
            worker.thaw()
        http.close()
    finally:
        api.stop()


@pytest.mark.parametrize(
    ("skew_s", "as_datetime"), [(90.0, False), (-90.0, True)], ids=["ahead-epoch", "behind-iso"]
)
def test_an_eta_from_a_client_with_a_skewed_clock_starts_on_redis_time(
    skew_s, as_datetime, client, start_worker, monkeypatch
):
    start_worker()
    real_time = time.time
    eta_s = real_time() + 2.0
    eta = datetime.fromtimestamp(eta_s, UTC) if as_datetime else eta_s
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: real_time() + skew_s)
        handle = jobs.echo.async_run_remote(1, eta=eta)
    time.sleep(1.0)
    assert handle.status().status is Status.QUEUED  # not before its time
    done = handle.wait(20)
    assert done.status is Status.SUCCEEDED
    assert done.started_at is not None
    # Redis's clock is this machine's: the eta is honoured to within a maintenance pass.
    assert eta_s - 0.05 <= done.started_at <= eta_s + 1.0, (done.started_at, eta_s)


def test_an_eta_through_a_gateway_with_a_skewed_clock(tmp_path, jobcord_env, api_key, start_worker):
    start_worker()
    api = ApiServer({**jobcord_env, **skewed_env(tmp_path, 90)}, [])
    try:
        with httpx.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        ) as http:
            eta_s = time.time() + 2.0
            eta = datetime.fromtimestamp(eta_s, UTC).isoformat()
            r = http.post(f"{JOB}/echo/async_run_remote", json={"input": {"x": 1}, "eta": eta})
            assert r.status_code == 202, r.text
            rid = r.json()["request_id"]

            def done() -> dict | None:
                body = http.get(f"/v1/requests/{rid}").json()
                return body if body["status"] not in ("QUEUED", "IN_PROGRESS") else None

            body = wait_for(done, 20, "the request to end", step=0.05)
    finally:
        api.stop()
    assert body["status"] == "SUCCEEDED"
    assert eta_s - 0.05 <= body["started_at"] <= eta_s + 1.0, (body["started_at"], eta_s)


def test_reports_without_a_redis_stamp_are_judged_by_their_own_times(rds):
    """Records of an older jobcord (no ``seen_at``) are read, by their writer's times."""
    now = time.time()
    old = {"process": "consumer:old:1", "role": "consumer", "published_at": now - 100}
    old["publish_interval_s"], old["loops"] = 5.0, []
    odd = {**old, "process": "consumer:odd:2", "published_at": now, "seen_at": "garbage"}
    for report in (old, odd):
        rds.set(f"jobcord:health:{report['process']}", json.dumps(report), ex=60)
        rds.sadd("jobcord:health", report["process"])
    rds.set("jobcord:consumer:w-old", json.dumps({"worker": "w-old", "heartbeat_at": now}))
    rds.sadd("jobcord:consumers", "w-old")
    store = ProcessHealthStore(rds)
    report = assess(store.reports(), stale_after_s=30, now=store.now())
    assert [p.process for p in report.problems] == ["consumer:old:1"]
    [consumer] = with_heartbeat_ages(ConsumerRegistry(rds).live(), store.now(), 1.0)
    assert consumer["stale"] is False and consumer["heartbeat_age_s"] < 5

    # New writes carry Redis's stamp, last (so it wins), whatever the report held.
    store.publish("p:new", {"seen_at": 1.0}, 5.0)
    store.publish("p:empty", {}, 5.0)
    for pid in ("p:new", "p:empty"):
        stamped = json.loads(rds.get(f"jobcord:health:{pid}"))
        assert abs(stamped["seen_at"] - store.now()) < 5
        assert 0 < rds.pttl(f"jobcord:health:{pid}") <= 5000
