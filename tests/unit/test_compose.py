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
    assert "--stream-node-max-bytes 512" in command  # ~0.7 KB per request's events, not 4 KB
    assert redis["volumes"] and redis["healthcheck"]


def test_minio_and_its_bucket():
    services = _compose()["services"]
    assert services["minio"]["command"].startswith("server /data")
    bucket = services["minio-bucket"]
    assert 'create_bucket(Bucket="jobcord-results")' in bucket["command"][0]
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"


def test_jobcord_services_share_one_configuration():
    services = _compose()["services"]
    jobcord = {n: s for n, s in services.items() if "jobcord:0.1.0" in s.get("image", "")}
    jobcord.pop("minio-bucket")  # the same image, run once to create the bucket
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


def test_minio_credentials_come_from_the_environment_and_only_s3_is_published():
    text = (ROOT / "compose.yaml").read_text()
    services = _compose()["services"]
    minio = services["minio"]
    # Only the S3 API, on loopback unless MINIO_PUBLISH says otherwise; never the console.
    assert minio["ports"] == ["${MINIO_PUBLISH:-127.0.0.1:9000}:9000"]
    required = "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD}"
    assert minio["environment"]["MINIO_ROOT_PASSWORD"] == required
    assert services["minio-bucket"]["environment"]["AWS_SECRET_ACCESS_KEY"] == required
    assert services["api"]["environment"]["AWS_SECRET_ACCESS_KEY"] == required
    assert 'create_bucket(Bucket="jobcord-results")' in services["minio-bucket"]["command"][0]
    assert "jobcord-secret-key" not in text  # no password written down anywhere


def test_images_are_pinned_and_the_app_ships_as_an_image():
    services = _compose()["services"]
    for name, service in services.items():
        image = service.get("image", "")
        assert image and not image.endswith(":latest") and ":" in image, (name, image)
    api = services["api"]
    assert api["image"] == "${JOBCORD_IMAGE:-jobcord:0.1.0}"
    assert "volumes" not in api  # code comes in the image, not from a bind mount
    # Presigned URLs name an address callers can reach, not http://minio:9000.
    assert api["environment"]["JOBCORD_S3_PUBLIC_URL"].startswith("${JOBCORD_S3_PUBLIC_URL:-")


def test_the_first_api_key_is_one_documented_command():
    text = (ROOT / "compose.yaml").read_text()
    guide = (ROOT / "docs" / "DEPLOY.md").read_text()
    command = "docker compose run --rm api keys create --apps"
    assert command in text and command in guide
    assert _compose()["services"]["api"]["command"][0] == "api"  # the image's entrypoint is jobcord


def test_monitoring_profile_scrapes_every_jobcord_process():
    services = _compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name]["volumes"]:
            host = volume.split(":")[0]
            assert not host.startswith("./") or (ROOT / host).exists(), volume
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        t: job
        for job in config["scrape_configs"]
        for s in job["static_configs"]
        for t in s["targets"]
    }
    for target, job in targets.items():
        host, port = target.split(":")
        command = services[host]["command"]
        if host == "api":
            assert port == "8000" and "authorization" in job  # JOBCORD_METRICS_TOKEN
        else:  # served on the compose network, where Prometheus is
            assert ["--metrics-port", port, "--metrics-host", "0.0.0.0"] == command[-4:], host
    workers = {
        n for n, s in services.items() if s.get("command", [""])[0] in ("worker", "scheduler")
    }
    assert workers <= {t.split(":")[0] for t in targets}


def test_grafana_charts_only_metrics_jobcord_serves():
    import json
    import re

    source = "\n".join(
        p.read_text()
        for d in ("storage", "scheduler", "producers", "consumers")
        for p in (ROOT / "jobcord" / d).rglob("*.py")
    )
    served = set(re.findall(r'"(jobcord_[a-z_]+)"', source))
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/jobcord.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bjobcord_[a-z_]+", e)}
    suffixes = ("_bucket", "_count", "_sum", "_total")
    for metric in used:
        base = next((metric[: -len(s)] for s in suffixes if metric.endswith(s)), metric)
        assert metric in served or base in served, metric
    assert len(used) >= 15


def test_scaling_recipes_use_what_jobcord_serves():
    keda = yaml.safe_load((ROOT / "deploy/keda/scaledobject.yaml").read_text())
    trigger = keda["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert "jobcord_queue_desired_consumers" in trigger["metadata"]["query"]
    assert keda["spec"]["minReplicaCount"] == 0  # scale to zero
    unit = (ROOT / "deploy/systemd/jobcord-worker@.service").read_text()
    assert "ExecStart=/opt/jobcord/.venv/bin/jobcord worker $APPS" in unit
    assert "KillSignal=SIGTERM" in unit
    worker = _compose()["services"]["worker-autoscale"]
    assert worker["profiles"] == ["autoscale"] and "--autoscale" in worker["command"]
