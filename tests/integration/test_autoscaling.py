"""Autoscaling on a host with fake NVML devices (the one hardware boundary we mock): one
worker serves two apps, moves a device to the app with the burst, scales an idle app to zero
and cold-starts it again; two hosts agree through Redis on an app's replica limit."""

from __future__ import annotations

import json
import threading
import time

import httpx
import redis

from jobcord.storage.keys import replicas_key
from jobcord.storage.registry import ConsumerRegistry
from jobcord.storage.statuses import Status
from tests.apps import scaling
from tests.conftest import wait_for

A, B, C = (f"tests.apps.scaling:app_{x}" for x in "abc")
TWO_H100 = {
    "JOBCORD_FAKE_GPUS": json.dumps(
        [
            {"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "uuid": "GPU-s0"},
            {"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "uuid": "GPU-s1"},
        ]
    )
}


def _replicas(rds: redis.Redis, app: str) -> dict[str, object] | None:
    for c in ConsumerRegistry(rds).live():
        if c.get("app") == app:
            return c.get("replicas")
    return None


def _children(rds: redis.Redis, app: str) -> list[dict]:
    return [ch for c in ConsumerRegistry(rds).live() if c["app"] == app for ch in c["children"]]


def test_a_burst_for_b_takes_a_device_from_busy_a_then_b_scales_to_zero_and_back(
    client, rds, start_worker
):
    start_worker(A, B, "--gpus", "all", env=TWO_H100)
    # A is busy on both GPUs: a steady stream of 1 s jobs.
    a_jobs = [scaling.a_work.async_run_remote(1.0) for _ in range(8)]
    wait_for(lambda: (_replicas(rds, "scale-a") or {}).get("running_here") == 2, 20, "A on 2")

    burst_at = time.time()
    b_jobs = [scaling.b_work.async_run_remote(0.3) for _ in range(4)]
    b_done = [h.wait(60) for h in b_jobs]
    assert all(r.status is Status.SUCCEEDED for r in b_done), [r.error for r in b_done]
    first_b = min(r.started_at for r in b_done)
    assert first_b - burst_at < 8.0, first_b - burst_at  # a device moved within seconds
    a_done = [h.wait(60) for h in a_jobs]
    assert all(r.status is Status.SUCCEEDED for r in a_done)  # A's running work finished
    assert first_b < max(r.finished_at for r in a_done) - 1.0  # B did not wait for A to drain
    # Never two apps on one GPU at once: B's runs and A's runs on a device do not overlap.
    spans = [(r.device, r.started_at, r.finished_at, r.app) for r in a_done + b_done]
    for dev, s1, e1, app1 in spans:
        for dev2, s2, e2, app2 in spans:
            if dev == dev2 and app1 != app2:
                assert e1 <= s2 or e2 <= s1, (dev, app1, app2)

    # Idle: B goes to zero after window (1 s) + delay (2 s); its processes exit.
    wait_for(lambda: not _children(rds, "scale-b"), 20, "B scaled to zero")
    startups = int(rds.get("jobcord:test:scaling:startups:b"))
    late = scaling.b_work.async_run_remote(0.0)
    reason = late.status().waiting_reason or ""
    assert late.wait(30).status is Status.SUCCEEDED
    assert int(rds.get("jobcord:test:scaling:startups:b")) == startups + 1  # a cold start
    assert reason == "" or "scale-b" in reason  # it said why it waited, if it was asked then
    info = _replicas(rds, "scale-b")
    assert info is not None and info["max"] == 2 and "decision" in info


def test_the_status_of_a_request_for_an_app_at_zero_says_cold_start(client, rds, start_worker):
    start_worker(C, "--gpus", "none", "--scale-down-delay", "30", env={"JOBCORD_LEASE_TTL_S": "1"})
    handle = scaling.c_work.async_run_remote(0.0)
    seen = wait_for(
        lambda: (r := handle.status()).waiting_reason or (r.is_terminal and "done"), 20, "reason"
    )
    assert seen == "done" or "scale-c" in seen and ("cold start" in seen or "zero" in seen), seen
    assert handle.wait(30).status is Status.SUCCEEDED


def test_two_hosts_never_run_more_replicas_than_the_limit(client, rds, start_worker):
    # scale-c allows 1 replica in all; each host could run 1 (one CPU slot each).
    start_worker(C, "--gpus", "none")
    start_worker(C, "--gpus", "none")
    most = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            live = sum(
                1
                for ch in _children(rds, "scale-c")
                if ch["state"] in ("ready", "starting") and not ch["retiring"]
            )
            most[0] = max(most[0], live, int(rds.zcard(replicas_key("scale-c"))))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        jobs = [scaling.c_work.async_run_remote(0.2) for _ in range(10)]
        assert all(h.wait(60).status is Status.SUCCEEDED for h in jobs)
    finally:
        stop.set()
        watcher.join(5)
    assert most[0] == 1, most[0]


def test_queues_and_dashboard_show_replicas_and_the_last_decision(
    client, rds, start_worker, jobcord_env
):
    from jobcord.storage.apikeys import ApiKeyStore
    from tests.conftest import ApiServer

    start_worker(C, "--gpus", "none", "--scale-down-delay", "30")
    key, _ = ApiKeyStore(rds).create(["scale-c"])
    api = ApiServer(jobcord_env, [], app_ref=C)
    try:
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}) as http:
            assert scaling.c_work.run_remote(0.0)["pid"] > 0

            def replicas() -> dict | None:
                got = http.get("/v1/queues").json()["replicas"]
                return got if got and got["running"] == 1 else None

            got = wait_for(replicas, 20, "one running replica")
            assert got["max"] == 1 and got["desired"] == 1 and got["hosts"] == 1
            assert got["decision"].startswith(("scale up", "steady", "holding")), got
            page = http.get("/dashboard")
            assert page.status_code == 200 and "Replicas" in page.text and "running 1" in page.text
            metrics = http.get("/metrics").text
            assert 'jobcord_app_replicas{app="scale-c",state="running"} 1.0' in metrics
    finally:
        api.stop()


def test_apps_share_a_gpu_only_when_allowed(client, rds, start_worker):
    one = {"JOBCORD_FAKE_GPUS": json.dumps([{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1"}])}
    start_worker(A, B, "--gpus", "all", "--share-gpus", "2", env=one)
    a = scaling.a_work.async_run_remote(1.5)
    b = scaling.b_work.async_run_remote(1.5)
    ra, rb = a.wait(30), b.wait(30)
    assert ra.status is Status.SUCCEEDED and rb.status is Status.SUCCEEDED
    assert ra.device == rb.device == "GPU-1"
    assert ra.started_at < rb.finished_at and rb.started_at < ra.finished_at  # at once


def test_the_shared_replica_count_in_redis(rds):
    from jobcord.storage.replicas import ReplicaLeases
    from jobcord.storage.scripts import Scripts

    leases = ReplicaLeases(Scripts(rds), ttl_s=0.5)
    app = "scale-count"
    try:
        assert leases.acquire(app, "h1:a", 2) and leases.acquire(app, "h2:a", 2)
        assert not leases.acquire(app, "h3:a", 2)  # the third host is refused
        assert leases.acquire(app, "h1:a", 2)  # a claim already held is only renewed
        leases.release(app, "h2:a")
        assert leases.count(app) == 1 and leases.acquire(app, "h3:a", 2)  # its place is free
        leases.release(app, "h3:a")
        time.sleep(0.7)
        assert leases.count(app) == 0  # a host that stopped renewing loses its claims
        assert leases.renew(app, ["h1:a"]) == 1  # ...and one that still runs counts again
    finally:
        rds.delete(replicas_key(app))


def test_a_job_with_its_own_policy_gets_replicas_of_its_own(client, rds, start_worker):
    D = "tests.apps.scaling:app_d"  # noqa: N806
    start_worker(D, "--gpus", "none", "--concurrency", "2")
    assert scaling.d_own.spec.queue.endswith(".d_own")  # a queue of its own
    own = [scaling.d_own.async_run_remote(0.3) for _ in range(3)]
    shared = [scaling.d_shared.async_run_remote(0.3) for _ in range(3)]
    own_pids = {h.result(timeout=30)["pid"] for h in own}
    shared_pids = {h.result(timeout=30)["pid"] for h in shared}
    assert len(own_pids) == 1 and len(shared_pids) == 1  # max 1 replica each
    assert own_pids.isdisjoint(shared_pids)  # never the same process
    info = wait_for(
        lambda: (r := _replicas(rds, "scale-d")) and "d_own" in r.get("jobs", {}) and r, 10, "jobs"
    )
    assert info["jobs"]["d_own"]["max"] == 1 and info["max"] == 1


def test_replicas_that_fail_to_start_are_retried_with_a_pause_not_in_a_loop(
    client, rds, start_worker
):
    rds.set("jobcord:test:scaling:fail-e", "1")
    worker = start_worker("tests.apps.scaling:app_e", "--gpus", "none", "--concurrency", "2")
    handle = scaling.e_work.async_run_remote(0.0)
    time.sleep(4.0)
    tries = int(rds.get("jobcord:test:scaling:startups:e") or 0)
    # Two slots, pauses of 1 s then 2 s: a handful of tries, never a tight loop.
    assert 1 <= tries <= 6, tries
    assert handle.status().status is Status.QUEUED
    rds.delete("jobcord:test:scaling:fail-e")  # the weights are back
    assert handle.wait(30).status is Status.SUCCEEDED
    assert worker.proc.poll() is None  # the worker lived through it
    assert "replica failed to start" in worker.log


def test_a_bad_scaling_flag_is_one_clear_error(jobcord_env):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    for flags, said in (
        (["--min-replicas", "5", "--max-replicas", "2"], "min_replicas (5) is above max_replicas"),
        (["--scale-window", "99999"], "window_s: Input should be less than or equal to 3600"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "jobcord.cli", "worker", C, *flags],
            cwd=ROOT,
            env={**os.environ, **jobcord_env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_one_metrics_port_for_several_apps_without_duplicate_series(client, start_worker):
    from prometheus_client.parser import text_string_to_metric_families

    from tests.conftest import free_port

    port = free_port()
    start_worker(A, B, "--gpus", "all", "--metrics-port", str(port), env=TWO_H100)
    assert scaling.a_work.run_remote(0.0)["device"]
    text = wait_for(
        lambda: (
            (t := httpx.get(f"http://127.0.0.1:{port}/metrics").text)
            and 'app="scale-a"' in t
            and "jobcord_child_processes" in t
            and t
        ),
        20,
        "metrics",
    )
    seen: set = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in seen, key  # Prometheus refuses duplicate series
            seen.add(key)
    gpus = [k for k in seen if k[0] == "jobcord_gpu_memory_total_bytes"]
    assert len(gpus) == 2  # the host's two GPUs, once each
