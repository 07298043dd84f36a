"""A worker cut off from Redis (its host in a network namespace, the link cut) ends its
attempt itself within a lease TTL (+2 s), freeing the device, while a worker that still
reaches Redis gets the request and runs it to its one outcome."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobcord.producers import RedisClient, set_default_client
from jobcord.storage.settings import load_settings
from jobcord.storage.statuses import Status
from tests.apps import containment as jobs
from tests.conftest import free_port, ping_redis, wait_for
from tests.topology import NetHost

APP = "tests.apps.containment:app"


@pytest.fixture
def cut_off_host() -> Iterator[NetHost]:
    why = NetHost.available()
    if why is not None:
        pytest.skip(why)
    host = NetHost()
    yield host
    host.close()


@pytest.fixture
def shared_redis(cut_off_host: NetHost, tmp_path: Path, monkeypatch, jobcord_env):
    """A redis-server both hosts reach: on loopback and on the veth's near end."""
    from jobcord.storage.embedded_redis import redis_server_binary

    port = free_port()
    subprocess.run(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", cut_off_host.here,
         "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", str(tmp_path),
         "--daemonize", "yes", "--logfile", str(tmp_path / "redis.log")],
        check=True,
    )  # fmt: skip
    wait_for(lambda: ping_redis(port), 10, "redis-server to answer")
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("JOBCORD_REDIS_URL", url)
    set_default_client(RedisClient(load_settings(redis_url=url)))
    yield port, url, f"redis://{cut_off_host.here}:{port}/0"
    set_default_client(None)
    redis.Redis(port=port).shutdown(nosave=True)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_a_cut_off_worker_ends_its_attempt_within_a_lease(cut_off_host, shared_redis, start_worker):
    port, url, far_url = shared_redis
    own = redis.Redis(port=port, decode_responses=True)
    far = start_worker(APP, env={"JOBCORD_REDIS_URL": far_url}, prefix=cut_off_host.prefix)
    handle = jobs.helpers_then_wait.async_run_remote("p", ["popen"], 6.0)
    wait_for(lambda: own.get("jobcord:test:running:p"), 30, "the job to start on the far host")
    job_pid = int(own.get("jobcord:test:running:p"))
    (helper,) = [int(p) for p in own.lrange("jobcord:test:helpers:p", 0, -1)]
    assert handle.status().worker == far.worker_id
    near = start_worker(APP, env={"JOBCORD_REDIS_URL": url})
    cut = time.monotonic()
    cut_off_host.cut()
    try:
        wait_for(
            lambda: not _alive(job_pid) and not _alive(helper),
            1.0 + 2.0,  # lease TTL (1 s in tests) + 2 s
            "the cut-off worker to end its attempt and the helper",
        )
        ended_after = time.monotonic() - cut
        rec = handle.wait(30)
        assert rec.status is Status.SUCCEEDED, far.log
        assert rec.attempt == 2 and rec.worker == near.worker_id
        assert far.proc.poll() is None  # the cut-off worker lives on, its device free
    finally:
        cut_off_host.heal()
    assert ended_after < 3.0
    log = "".join(far.lines)
    assert "lease not renewed for a whole TTL" in log, far.log
