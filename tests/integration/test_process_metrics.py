"""Consumers and schedulers serve their own Prometheus figures with --metrics-port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.apps import lifecycle as jobs
from tests.conftest import ROOT, free_port, wait_for

# Every loop completes a pass within a second (a loop's gauge appears after its first pass).
FAST_LOOPS = {
    "JOBCORD_HEALTH_INTERVAL_S": "0.2",
    "JOBCORD_LEASE_TTL_S": "2",
    "JOBCORD_MAINTENANCE_INTERVAL_S": "0.2",
}


def _scrape_until(port: int, needle: str) -> str:
    """The first scrape of ``port`` that contains ``needle`` (the server may not be up yet)."""

    def scrape() -> str | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.TransportError:
            return None
        return text if needle in text else None

    return wait_for(scrape, 20, f"{needle} on :{port}/metrics")


def test_a_worker_serves_its_request_and_loop_metrics(client, start_worker):
    port = free_port()
    start_worker("tests.apps.lifecycle:app", "--metrics-port", str(port), env=FAST_LOOPS)
    assert jobs.echo.run_remote(3)["x"] == 3
    text = _scrape_until(port, 'status="SUCCEEDED"')
    assert 'jobcord_requests_finished_total{app="lifecycle",job="echo",status="SUCCEEDED"} 1.0' in (
        text
    )
    assert 'jobcord_request_run_seconds_count{app="lifecycle",job="echo"} 1.0' in text
    for loop in ("leases", "cancels", "maintenance", "health"):
        _scrape_until(port, f'jobcord_loop_last_pass_timestamp_seconds{{loop="{loop}"}}')


def test_a_scheduler_serves_metrics_and_a_taken_port_is_one_clear_error(
    jobcord_env, start_scheduler
):
    port = free_port()
    start_scheduler("--metrics-port", str(port), **FAST_LOOPS)
    for loop in ("maintenance", "webhooks", "health"):
        _scrape_until(port, f'jobcord_loop_last_pass_timestamp_seconds{{loop="{loop}"}}')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "jobcord.cli", "scheduler", "--metrics-port", str(busy)],
            cwd=ROOT,
            env={**os.environ, **jobcord_env},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2, done.stderr
    assert f"--metrics-port {busy}" in done.stderr and "Traceback" not in done.stderr


def test_a_gpu_worker_serves_its_devices_and_job_processes(client, start_worker):
    port = free_port()
    fake = (
        '[{"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "uuid": "GPU-h100-m",'
        ' "used_gb": 40, "utilization": 0.5}]'
    )
    start_worker(
        "tests.apps.lifecycle:app",
        "--gpus",
        "all",
        "--metrics-port",
        str(port),
        env={**FAST_LOOPS, "JOBCORD_FAKE_GPUS": fake},
    )
    assert jobs.gpu_pid.run_remote()["pid"] > 0
    text = _scrape_until(port, "jobcord_child_jobs_total")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    gpu = (("gpu_class", "h100"), ("name", "NVIDIA H100 80GB HBM3"), ("uuid", "GPU-h100-m"))
    assert samples[("jobcord_gpu_memory_used_bytes", gpu)] == 40 * 2**30
    assert samples[("jobcord_gpu_memory_total_bytes", gpu)] == 80 * 2**30
    assert samples[("jobcord_gpu_utilization_ratio", gpu)] == 0.5
    app = ("app", "lifecycle")
    assert samples[("jobcord_child_processes", (app, ("state", "ready")))] == 1
    assert samples[("jobcord_child_jobs_total", (app, ("child", "h100-0-0")))] == 1
