"""Redis restarts (AOF on, as jobcord requires) while a request runs: nothing is lost."""

from __future__ import annotations

import threading
import time

import redis

from jobcord.storage.statuses import Status
from tests.conftest import start_private_redis as _start_redis
from tests.conftest import wait_for


def test_request_survives_a_redis_restart_mid_job(own_redis, start_worker):
    from jobcord.producers import RedisClient, set_default_client
    from jobcord.storage.settings import load_settings
    from tests.apps import lifecycle as jobs

    port, url, data_dir = own_redis
    set_default_client(RedisClient(load_settings(redis_url=url)))
    try:
        # An outage shorter than a lease (5 s here, the default): the live worker keeps its
        # job. A longer one ends it (self-fencing, below).
        start_worker(env={"JOBCORD_REDIS_URL": url, "JOBCORD_LEASE_TTL_S": "5"})
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

    from jobcord.storage.apikeys import ApiKeyStore
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


def test_an_outage_longer_than_a_lease_ends_the_attempt_and_it_runs_again(own_redis, start_worker):
    """Past a whole lease without a renewal the worker cannot tell a Redis restart from a
    partition in which recovery hands the request to another worker: it ends the attempt
    (freeing the device), and the request runs again once Redis is back, with one outcome."""
    from jobcord.producers import RedisClient, set_default_client
    from jobcord.storage.settings import load_settings
    from tests.apps import lifecycle as jobs

    port, url, data_dir = own_redis
    set_default_client(RedisClient(load_settings(redis_url=url)))
    try:
        worker = start_worker(env={"JOBCORD_REDIS_URL": url})  # lease TTL 1 s
        handle = jobs.report_pid.async_run_remote("long-outage", 4.0)
        own = redis.Redis(port=port, decode_responses=True)
        wait_for(lambda: own.get("jobcord:test:pid:long-outage:1"), 20, "the job to start")
        first = int(own.get("jobcord:test:pid:long-outage:1"))
        own.shutdown(save=False, nosave=False)
        wait_for(lambda: not _process_alive(first), 3, "the attempt to be ended by its worker")
        _start_redis(port, data_dir)
        rec = handle.wait(30)
        assert rec.status is Status.SUCCEEDED, worker.log
        assert rec.attempt == 2 and own.get("jobcord:test:count:long-outage") == "2"
        assert "lease not renewed for a whole TTL" in "".join(worker.lines)
    finally:
        set_default_client(None)


def _process_alive(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
