"""Redis that refuses writes (maxmemory reached with noeviction): a finished job holds its
outcome and writes it once Redis takes writes again (its lease renewed meanwhile); a submit
Redis refuses is jobcord's own error, and nothing is queued."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis

from jobcord.producers import RedisClient, RedisUnavailable, set_default_client
from jobcord.storage.keys import record_key
from jobcord.storage.settings import load_settings
from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs
from tests.conftest import free_port, ping_redis, service_missing, wait_for


def _redis7() -> str:
    """A redis-server 7 or later (functions: lease renewal flagged allow-oom)."""
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server 7+ on PATH")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    major = int(version.split("v=", 1)[1].split(".", 1)[0]) if "v=" in version else 0
    if major < 7:
        service_missing(f"redis-server 7+ (found {version.strip()})")
    return str(binary)


@pytest.fixture
def full_redis(tmp_path, monkeypatch, jobcord_env):
    port = free_port()
    subprocess.run(
        [_redis7(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--maxmemory-policy", "noeviction", "--dir", str(tmp_path), "--daemonize", "yes",
         "--logfile", str(tmp_path / "redis.log")],
        check=True,
    )  # fmt: skip
    wait_for(lambda: ping_redis(port), 10, "redis-server to answer")
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("JOBCORD_REDIS_URL", url)
    set_default_client(RedisClient(load_settings(redis_url=url)))
    yield redis.Redis(port=port, decode_responses=True), url
    set_default_client(None)
    redis.Redis(port=port).shutdown(nosave=True)


def test_a_finished_job_keeps_its_outcome_while_redis_refuses_writes(full_redis, start_worker):
    own, url = full_redis
    worker = start_worker(env={"JOBCORD_REDIS_URL": url})
    handle = jobs.report_pid.async_run_remote("full", 1.0)
    wait_for(lambda: own.get("jobcord:test:pid:full:1"), 20, "the job to start")
    own.config_set("maxmemory", "1")  # every write that may grow memory is refused now
    time.sleep(4.0)  # the job ends meanwhile; four lease TTLs pass
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        own.set("jobcord:test:probe", "1")
    assert own.hget(record_key(handle.request_id), "status") == "IN_PROGRESS"
    own.config_set("maxmemory", "0")
    rec = handle.wait(30)
    assert rec.status is Status.SUCCEEDED, worker.log
    assert rec.attempt == 1 and rec.worker_losses == 0
    assert own.get("jobcord:test:count:full") == "1"  # ran once: the outcome was held
    assert "outcome held: redis unavailable" in "".join(worker.lines)
    assert worker.proc.poll() is None


def test_a_submit_redis_refuses_is_a_clear_error_and_queues_nothing(full_redis):
    own, _url = full_redis
    own.config_set("maxmemory", "1")
    with pytest.raises(RedisUnavailable, match="refused the submit, nothing was queued"):
        jobs.echo.async_run_remote(1, idempotency_key="refused-1")
    own.config_set("maxmemory", "0")
    assert not own.keys(record_key("*"))
    handle = jobs.echo.async_run_remote(1, idempotency_key="refused-1")  # same key: accepted
    assert handle.status().status is Status.QUEUED
