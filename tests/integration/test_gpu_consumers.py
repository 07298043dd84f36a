"""Device placement with a fake NVML device list (the one hardware boundary we mock):
fallback to a pricier class, multi-GPU children, requests nobody can serve, recycling, and
children replaced after a CUDA error that poisons their context. torch runs for real (CPU)."""

from __future__ import annotations

import json
import time

from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs
from tests.conftest import wait_for

APP = "tests.apps.lifecycle:app"


def _fake(*gpus: tuple[str, int, str], held_gb: float = 0) -> dict[str, str]:
    devices = [
        {"name": name, "memory_gb": mem, "uuid": uuid, "process_memory_gb": held_gb}
        for name, mem, uuid in gpus
    ]
    return {"JOBCORD_FAKE_GPUS": json.dumps(devices)}


H100 = ("NVIDIA H100 80GB HBM3", 80, "GPU-h100-a")
H100_B = ("NVIDIA H100 80GB HBM3", 80, "GPU-h100-b")
A6000 = ("NVIDIA RTX A6000", 48, "GPU-a6000")


def test_cheapest_class_first_then_fallback_when_it_is_busy(client, start_worker):
    fallback = {"JOBCORD_FALLBACK_AFTER_S": "1.5"}
    start_worker(APP, "--gpus", "all", env={**_fake(A6000), **fallback})
    start_worker(APP, "--gpus", "all", env={**_fake(H100), **fallback})
    # The a6000 consumer is idle: the request starts there at once, never on the h100.
    quick = jobs.wide.async_run_remote()
    assert quick.result(timeout=20)["devices"] == "GPU-a6000"
    assert quick.status().started_at - quick.status().created_at < 1.0
    # Keep the a6000 busy; the next request waits 1.5 s for it, then the h100 takes it.
    busy = [jobs.wide.async_run_remote(seconds=3) for _ in range(2)]
    done = [h.wait(20) for h in busy]
    devices = sorted(r.device for r in done)
    assert devices == ["GPU-a6000", "GPU-h100-a"], devices
    late = next(r for r in done if r.device == "GPU-h100-a")
    assert late.started_at - late.created_at >= 1.4


def test_fallback_serves_a_class_with_no_consumer_at_once(client, start_worker):
    # No a6000 consumer is alive: the h100 consumer does not make the request wait 30 s.
    start_worker(APP, "--gpus", "all", env={**_fake(H100), "JOBCORD_FALLBACK_AFTER_S": "30"})
    rec = jobs.wide.async_run_remote().wait(20)
    assert rec.status is Status.SUCCEEDED and rec.device == "GPU-h100-a"
    assert rec.queue == "jobcord.lifecycle.a6000"  # it waited on its cheapest class's queue
    assert rec.started_at - rec.created_at < 1.0


def test_a_request_no_consumer_can_serve_says_why(client, http, start_worker):
    handle = jobs.two_gpus.async_run_remote()
    reason = handle.status().waiting_reason
    assert "no live consumer serves queue jobcord.lifecycle.h100x2" in reason
    assert "no consumer of app 'lifecycle' is running" in reason
    start_worker(APP, "--gpus", "all", env=_fake(H100))  # one GPU: cannot take a 2-GPU job
    reason = http.get(f"/v1/requests/{handle.request_id}").json()["waiting_reason"]
    assert "serve: h100 (1 GPU/child)" in reason
    # A machine with two H100s gives each child both: now it can.
    start_worker(APP, "--gpus", "all", env=_fake(H100, H100_B))
    assert handle.result(timeout=20)["devices"] == "GPU-h100-a,GPU-h100-b"
    assert handle.status().waiting_reason is None


def test_one_gpu_jobs_run_next_to_two_gpu_jobs_on_two_gpu_children(client, start_worker):
    start_worker(APP, "--gpus", "all", "--concurrency", "1", env=_fake(H100, H100_B))
    one = jobs.where_am_i.async_run_remote()
    two = jobs.two_gpus.async_run_remote()
    assert one.result(timeout=20)["CUDA_VISIBLE_DEVICES"] == "GPU-h100-a,GPU-h100-b"
    assert two.result(timeout=20)["devices"] == "GPU-h100-a,GPU-h100-b"


def test_children_are_recycled_after_n_jobs(client, rds, start_worker):
    start_worker(APP, "--max-jobs-per-child", "2")
    pids = [jobs.echo.run_remote(i)["pid"] for i in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4], pids
    assert int(rds.get("jobcord:test:startups")) == 3  # on_startup ran in each new child


def test_children_holding_gpu_memory_after_a_job_are_recycled(client, start_worker):
    env = _fake(H100, held_gb=76)  # 95% of the card held after every job
    start_worker(APP, "--gpus", "all", "--recycle-memory-fraction", "0.9", env=env)
    first, second = (jobs.gpu_pid.run_remote()["pid"] for _ in range(2))
    assert first != second


def test_cuda_error_that_poisons_the_context_replaces_the_child(client, rds, start_worker):
    start_worker()
    before = jobs.echo.run_remote(1)["pid"]
    handle = jobs.cuda_fault.async_run_remote("poisoned")
    rec = handle.wait(20)
    assert rec.status is Status.FAILED and "illegal memory access" in rec.error.message
    assert int(rds.get("jobcord:test:pid:poisoned")) == before
    after = wait_for(lambda: (p := jobs.echo.run_remote(2)["pid"]) != before and p, 20, "new child")
    assert after != before
    assert int(rds.get("jobcord:test:startups")) == 2


def test_torch_tensor_job_in_a_pinned_child(client, start_worker):
    start_worker(APP, "--gpus", "all", env=_fake(H100))
    t0 = time.monotonic()
    out = jobs.torch_matmul.run_remote(64)
    assert out["trace"] == float(sum(i * 64 + i for i in range(64)))
    assert out["CUDA_VISIBLE_DEVICES"] == "GPU-h100-a" and out["cuda_available"] is False
    assert time.monotonic() - t0 < 60


def test_each_child_is_pinned_to_its_own_gpu(client, start_worker):
    start_worker(APP, "--gpus", "all", "--gpus-per-child", "1", env=_fake(H100, H100_B))
    handles = [jobs.wide.async_run_remote(seconds=1.0) for _ in range(2)]
    devices = sorted(h.result(timeout=20)["devices"] for h in handles)
    assert devices == ["GPU-h100-a", "GPU-h100-b"]
    # Each request's record names its own child's GPU, not every GPU of the worker.
    assert sorted(h.status().device for h in handles) == ["GPU-h100-a", "GPU-h100-b"]


def test_one_childs_death_leaves_its_siblings_running(client, rds, start_worker):
    start_worker(APP, "--concurrency", "2")
    survivor = jobs.report_pid.async_run_remote("sibling", 3.0)
    wait_for(lambda: rds.get("jobcord:test:pid:sibling:1"), 20, "the long job to start")
    dying = jobs.crash.async_run_remote("sibling-crash")  # kills its own process, 3 times
    assert dying.wait(20).error.type == "WorkerLost"
    rec = survivor.wait(20)
    assert rec.status is Status.SUCCEEDED and rec.attempt == 1 and rec.worker_losses == 0
