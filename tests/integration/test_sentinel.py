"""Redis Sentinel: every process follows a failover without a restart, and acknowledged
submits (``JOBCORD_REDIS_MIN_REPLICAS_ACK``) are only ever ids a replica already holds.

A real primary, replica and three Sentinels (``tests.topology``); the primary is SIGKILLed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobcord.storage.apikeys import ApiKeyStore
from jobcord.storage.connection import connect_url
from jobcord.storage.errors import ConfigurationError, NotAcknowledged
from jobcord.storage.statuses import Status
from tests.apps import topology as jobs
from tests.conftest import ApiServer, wait_for
from tests.topology import SentinelSetup

APP = "tests.apps.topology:app"


@pytest.fixture
def sentinels(tmp_path: Path, monkeypatch, jobcord_env) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(tmp_path / "redis")
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("JOBCORD_REDIS_URL", setup.url)
    monkeypatch.setenv("JOBCORD_TEST_MARKS", str(marks))
    jobcord_env.update(JOBCORD_REDIS_URL=setup.url, JOBCORD_TEST_MARKS=str(marks))
    yield setup
    setup.close()


def test_every_process_follows_a_failover(sentinels, start_worker, jobcord_env, tmp_path):
    jobs.client()
    worker = start_worker(APP)
    api = ApiServer(jobcord_env, [], app_ref=APP)
    try:
        key, _ = ApiKeyStore(connect_url(sentinels.url, decode_responses=True)).create(["topology"])
        auth = {"Authorization": f"Bearer {key}"}
        assert jobs.mark.run_remote("before") == "before"
        old = sentinels.primary_address()
        sentinels.primary.kill()  # a power cut: the replica is promoted
        killed_at = time.monotonic()
        new = sentinels.wait_failover()
        assert (new.host, new.port) != old

        handle = jobs.submit_retrying("after")
        assert handle.result(timeout=30) == "after"  # the same worker, no restart
        recovered_s = time.monotonic() - killed_at
        assert worker.proc.poll() is None
        http = httpx.post(
            f"{api.url}/v1/apps/topology/jobs/mark/run_remote",
            json={"input": {"key": "http"}},
            headers=auth,
            timeout=30,
        )
        assert http.status_code == 200, http.text
        assert http.json()["output"] == "http"
        assert api.proc.poll() is None
        changed = [line for line in worker.lines if "redis primary changed" in line]
        assert changed, worker.log
        assert f"{new.port}" in changed[0]
        # The worker's job processes follow too: each says so once, the consumer once.
        assert len(changed) <= 1 + 2, changed
        print(f"failover followed {recovered_s:.1f} s after the primary was killed")
    finally:
        api.stop()


def test_no_request_in_flight_is_lost(sentinels, start_worker):
    """Running and queued requests when the primary dies (the replica in sync) end once."""
    jobs.client()
    start_worker(APP, "--concurrency", "2")
    handles = [
        jobs.mark.async_run_remote(f"k{i}", sleep_s=1.0, idempotency_key=f"k{i}") for i in range(6)
    ]
    wait_for(lambda: len(jobs.runs(Path(os.environ["JOBCORD_TEST_MARKS"]))) >= 2, 20, "jobs")
    time.sleep(0.3)  # WAIT-free submits: give the replica its (sub-ms) lag
    sentinels.primary.kill()
    sentinels.wait_failover()
    for i, h in enumerate(handles):
        assert h.result(timeout=60) == f"k{i}"
    ran = jobs.runs(Path(os.environ["JOBCORD_TEST_MARKS"]))
    assert sorted(set(ran)) == [f"k{i}" for i in range(6)]


def test_acknowledged_submit_needs_a_replica(sentinels, start_worker):
    c = jobs.client(redis_min_replicas_ack=1, redis_ack_timeout_ms=300)
    start_worker(APP)
    handle = jobs.mark.async_run_remote("acked", idempotency_key="acked")
    assert handle.result(timeout=30) == "acked"

    replica = sentinels.replicas[0]
    pid = replica.pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the replica stops taking the stream: no copy, no id
    try:
        started = time.monotonic()
        with pytest.raises(NotAcknowledged, match="0 of 1 replicas"):
            jobs.mark.async_run_remote("unconfirmed", idempotency_key="unconfirmed")
        assert time.monotonic() - started < 3
    finally:
        os.kill(pid, signal.SIGCONT)
    # The same key once the replica is back: the very request the primary kept, not a second.
    again = jobs.submit_retrying("unconfirmed")
    assert not again.created
    assert again.result(timeout=30) == "unconfirmed"
    assert c.get(again.request_id).status is Status.SUCCEEDED
    assert jobs.runs(Path(os.environ["JOBCORD_TEST_MARKS"])).count("unconfirmed") == 1


def test_a_request_starts_only_once_replicas_hold_it(sentinels, start_worker):
    """A consumer with acknowledgements on starts nothing a failover could still erase: its
    fetch waits for the replicas; unconfirmed claims go back to the queue, unstarted."""
    jobs.client()  # this caller does not wait: the primary alone takes the submit
    start_worker(
        APP, env={"JOBCORD_REDIS_MIN_REPLICAS_ACK": "1", "JOBCORD_REDIS_ACK_TIMEOUT_MS": "200"}
    )
    assert jobs.mark.run_remote("warm") == "warm"
    pid = sentinels.replicas[0].pid()
    assert pid is not None
    marks = Path(os.environ["JOBCORD_TEST_MARKS"])
    os.kill(pid, signal.SIGSTOP)
    try:
        handle = jobs.mark.async_run_remote("held")
        time.sleep(2.0)
        assert "held" not in jobs.runs(marks), "ran while no replica held the request"
        assert handle.status().status is Status.QUEUED
    finally:
        os.kill(pid, signal.SIGCONT)
    assert handle.result(timeout=30) == "held"
    assert jobs.runs(marks).count("held") == 1


def test_acknowledged_submit_over_http_is_503(sentinels, jobcord_env):
    env = {
        **jobcord_env,
        "JOBCORD_REDIS_MIN_REPLICAS_ACK": "2",
        "JOBCORD_REDIS_ACK_TIMEOUT_MS": "200",
    }
    api = ApiServer(env, [], app_ref=APP)
    try:
        key, _ = ApiKeyStore(connect_url(sentinels.url, decode_responses=True)).create(["topology"])
        reply = httpx.post(
            f"{api.url}/v1/apps/topology/jobs/mark/async_run_remote", json={"input": {"key": "x"}},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "x"}, timeout=10,
        )  # fmt: skip
        assert reply.status_code == 503, reply.text
        assert reply.json()["type"] == "NotAcknowledged"
        assert "1 of 2 replicas" in reply.json()["detail"]
        assert reply.headers["Retry-After"] == "1"
    finally:
        api.stop()


def test_aof_acknowledgement_needs_waitaof(sentinels, start_worker):
    """WAITAOF (Redis 7.2+): where the server lacks it, the option is a clear error."""
    version = sentinels.primary.client().info("server")["redis_version"]
    jobs.client(redis_ack_aof=True, redis_min_replicas_ack=1)
    if tuple(int(p) for p in version.split(".")[:2]) >= (7, 2):
        start_worker(APP)
        assert jobs.mark.async_run_remote("aof").result(timeout=30) == "aof"
        return
    with pytest.raises(ConfigurationError, match="WAITAOF"):
        jobs.mark.async_run_remote("aof")
