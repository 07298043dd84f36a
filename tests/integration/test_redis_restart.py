"""Redis restarts (AOF on, as jobcord requires) while a request runs: nothing is lost."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from storage.embedded_redis import start_redis_server
from storage.statuses import Status
from tests.conftest import free_port, wait_for


def _start_redis(port: int, data_dir) -> None:
    start_redis_server(
        data_dir, ["--port", str(port), "--bind", "127.0.0.1", "--save", ""], appendfsync="always"
    )
    wait_for(lambda: _ping(port), 10, "redis-server to answer")


def _ping(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path, monkeypatch, jobcord_env):
    port = free_port()
    _start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("JOBCORD_REDIS_URL", url)
    yield port, url, tmp_path
    if _ping(port):
        redis.Redis(port=port).shutdown(nosave=True)


def test_request_survives_a_redis_restart_mid_job(own_redis, start_worker):
    from producers import RedisClient, set_default_client
    from storage.settings import load_settings
    from tests.apps import lifecycle as jobs

    port, url, data_dir = own_redis
    set_default_client(RedisClient(load_settings(redis_url=url)))
    try:
        start_worker(env={"JOBCORD_REDIS_URL": url})
        handle = jobs.report_pid.async_run_remote("restart", 3.0)
        # The job's own first Redis writes done (IN_PROGRESS comes a moment before its body
        # runs): the restart hits the job mid-sleep, not the app's own Redis calls.
        own = redis.Redis(port=port)
        wait_for(lambda: own.get("jobcord:test:pid:restart:1"), 20, "the job to start")
        assert handle.status().status is Status.IN_PROGRESS
        waiter: list[object] = []
        t = threading.Thread(target=lambda: waiter.append(handle.result(timeout=30)))
        t.start()  # a caller already waiting when Redis goes away
        redis.Redis(port=port).shutdown(save=False, nosave=False)  # AOF keeps the record
        time.sleep(1.0)
        _start_redis(port, data_dir)
        started = time.monotonic()
        t.join(30)
        assert waiter == [1]  # the waiter rode out the restart; the live worker kept the job
        assert handle.result(timeout=30) == 1
        rec = handle.status()
        assert rec.status is Status.SUCCEEDED and rec.worker_losses == 0
        assert time.monotonic() - started < 10
        # And the consumer still serves new work after the restart.
        assert jobs.echo.run_remote(9)["x"] == 9
    finally:
        set_default_client(None)


def test_api_answers_503_with_retry_after_while_redis_is_down(own_redis):
    import httpx

    from storage.apikeys import ApiKeyStore
    from tests.conftest import ApiServer, terminate

    port, url, _ = own_redis
    key, _ = ApiKeyStore(redis.Redis.from_url(url, decode_responses=True)).create(["lifecycle"])
    server = ApiServer({"JOBCORD_REDIS_URL": url}, [])
    try:
        redis.Redis(port=port).shutdown(nosave=True)
        reply = httpx.post(
            f"{server.url}/v1/apps/lifecycle/jobs/echo/async_run_remote",
            json={"input": {"x": 1}},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert reply.status_code == 503, reply.text
        assert reply.headers["Retry-After"] == "1"
        assert reply.json()["type"] == "Unavailable" and "Redis" in reply.json()["detail"]
        assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 503
    finally:
        terminate(server.proc)
