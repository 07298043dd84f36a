"""GPU-class queues with a fake NVML device list (the one hardware boundary we mock)."""

from __future__ import annotations

import json

from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs

FAKE_H100 = json.dumps([{"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "uuid": "GPU-1234"}])


def test_gpu_job_waits_on_its_class_queue_and_runs_pinned_by_uuid(client, start_worker):
    handle = jobs.where_am_i.async_run_remote()
    assert handle.status().queue == "jobcord.lifecycle.h100"
    start_worker()  # a CPU consumer never takes GPU work
    assert jobs.echo.run_remote(1)["x"] == 1
    assert handle.status().status is Status.QUEUED
    start_worker("tests.apps.lifecycle:app", "--gpus", "all", env={"JOBCORD_FAKE_GPUS": FAKE_H100})
    out = handle.result(timeout=20)
    assert out == {
        "CUDA_VISIBLE_DEVICES": "GPU-1234",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "ctx.devices": "GPU-1234",
    }
    assert handle.status().device == "GPU-1234"


def test_cpu_consumer_children_see_no_gpu(client, start_worker):
    start_worker()
    handle = jobs.echo.async_run_remote(5)
    handle.result(timeout=20)
    assert handle.status().device is None
