"""compose.yaml runs the whole system: its structure, checked (this machine has no
`docker compose` plugin to run `docker compose config`)."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT

COMMANDS = {"api", "scheduler", "worker"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_redis_keeps_jobs():
    redis = _compose()["services"]["redis"]
    command = redis["command"]
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert redis["volumes"] and redis["healthcheck"]


def test_minio_and_its_bucket():
    services = _compose()["services"]
    assert services["minio"]["command"].startswith("server /data")
    bucket = services["minio-bucket"]
    assert "mc mb --ignore-existing local/jobcord-results" in bucket["command"][0]
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"


def test_jobcord_services_share_one_configuration():
    services = _compose()["services"]
    jobcord = {n: s for n, s in services.items() if s.get("image", "").startswith("jobcord")}
    assert {"api", "scheduler", "worker-cpu", "worker-gpu0", "worker-gpu1"} <= set(jobcord)
    for name, service in jobcord.items():
        assert service["command"][0] in COMMANDS, name
        env = service["environment"]
        assert env["JOBCORD_REDIS_URL"] == "redis://redis:6379/0"
        assert env["JOBCORD_S3_BUCKET"] == "jobcord-results"
        assert service["depends_on"]["minio-bucket"]["condition"] == (
            "service_completed_successfully"
        )


def test_one_worker_per_gpu_with_a_device_reservation():
    services = _compose()["services"]
    gpu_workers = {n: s for n, s in services.items() if n.startswith("worker-gpu")}
    reserved = []
    for name, service in gpu_workers.items():
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        reserved += device["device_ids"]
        # Inside its container the worker sees only its own GPU, as index 0.
        assert service["command"][2:4] == ["--gpus", "0"], name
        assert service["stop_grace_period"] == "40s"  # longer than the 30 s drain
    assert sorted(reserved) == ["0", "1"]
