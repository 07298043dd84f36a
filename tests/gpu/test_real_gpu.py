"""The real GPU path (marker ``gpu``; skips on a machine without an NVIDIA GPU):
NVML discovery, a consumer pinned by UUID, a torch job that proves where it ran, and a job
stuck in a long CUDA computation killed by its timeout with its memory freed and the next
job served. Run: ``.venv/bin/python -m pytest -m gpu tests/gpu``."""

from __future__ import annotations

import os
import time

import pytest

from jobcord.consumers.devices import discover_devices
from jobcord.storage.statuses import Status

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not discover_devices() or not torch.cuda.is_available():
    pytest.skip("no NVIDIA GPU on this machine", allow_module_level=True)

from examples import gpu_demo  # noqa: E402 (after the skip: imports nothing heavy anyway)

APP = "examples.gpu_demo:app"


def _process_memory(uuid: str, pid: int) -> int:
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        return sum(p.usedGpuMemory or 0 for p in procs if p.pid == pid)
    finally:
        pynvml.nvmlShutdown()


def test_nvml_discovery_classifies_the_gpu():
    devices = discover_devices()
    assert devices and all(d.uuid.startswith(("GPU-", "MIG-")) for d in devices)
    assert devices[0].gpu_class is not None, devices[0].name


def test_torch_job_runs_pinned_to_its_gpu(client, start_worker):
    gpu = discover_devices()[0]
    start_worker(APP, "--gpus", "0")
    out = gpu_demo.matmul.run_remote(2048)
    assert out["device"] == "cuda:0" and out["CUDA_VISIBLE_DEVICES"] == gpu.uuid
    assert out["name"] == gpu.name
    assert gpu.uuid.removeprefix("GPU-") in out["uuid"]


def test_stuck_cuda_job_is_killed_by_its_timeout_and_memory_freed(client, start_worker):
    gpu = discover_devices()[0]
    start_worker(APP, "--gpus", "0")
    warm = gpu_demo.matmul.run_remote(256)
    assert warm["device"] == "cuda:0"
    handle = gpu_demo.spin.async_run_remote(600.0)  # its timeout is 5 s
    started = time.monotonic()
    rec = handle.wait(60)
    assert rec.status is Status.TIMED_OUT
    assert time.monotonic() - started < 5 + 3 + 10  # timeout + kill grace + startup slack
    pid = int(rec.progress_message.rsplit(" ", 1)[1])
    # The killed child is gone, its GPU memory released, and a fresh child serves the next job.
    deadline = time.monotonic() + 15
    while _process_memory(gpu.uuid, pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _process_memory(gpu.uuid, pid) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    after = gpu_demo.matmul.run_remote(256)
    assert after["device"] == "cuda:0"
