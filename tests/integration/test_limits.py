"""Fairness: a per-key submission rate, a per-app cap on requests in flight and bounded
waits (429 + Retry-After), so that one tenant cannot monopolise a GPU class or the API."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack

import httpx
import pytest

from jobcord.producers import HttpClient, RedisClient
from jobcord.storage.apikeys import ApiKeyStore
from jobcord.storage.errors import TooManyRequests
from jobcord.storage.settings import load_settings
from tests.apps import lifecycle as jobs
from tests.conftest import ROOT, ApiServer, wait_for

COUNT = "/v1/apps/lifecycle/jobs/count/async_run_remote"


def _records(rds) -> int:
    return sum(1 for k in rds.scan_iter("jobcord:req:*") if k.count(":") == 2)


@pytest.fixture
def limited_api(jobcord_env):
    server = ApiServer({**jobcord_env, "JOBCORD_APP_MAX_IN_FLIGHT": '{"lifecycle": 3}'}, [])
    yield server
    server.stop()


def _client(server: ApiServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})


def test_key_over_its_rate_gets_429_with_retry_after(api_server, rds):
    store = ApiKeyStore(rds)
    slow_key, slow = store.create(["lifecycle"], rate_per_s=2)  # burst: 2 s of rate = 4
    free_key, _ = store.create(["lifecycle"])
    with _client(api_server, slow_key) as slow_http, _client(api_server, free_key) as free_http:
        codes = [slow_http.post(COUNT, json={"input": {"key": "r"}}) for _ in range(6)]
        assert [r.status_code for r in codes] == [202, 202, 202, 202, 429, 429]
        refused = codes[-1]
        assert int(refused.headers["Retry-After"]) >= 1
        assert slow.key_id in refused.json()["detail"] and "rate" in refused.json()["detail"]
        assert _records(rds) == 4  # nothing was queued for the refused calls
        # Another tenant is not slowed down by this one.
        assert all(
            free_http.post(COUNT, json={"input": {"key": "f"}}).status_code == 202
            for _ in range(10)
        )
        time.sleep(0.6)  # the bucket refills at 2 tokens/s
        assert slow_http.post(COUNT, json={"input": {"key": "r"}}).status_code == 202
        # Reads are not submissions: never rate limited.
        rid = codes[0].json()["request_id"]
        assert all(slow_http.get(f"/v1/requests/{rid}").status_code == 200 for _ in range(10))


def test_app_in_flight_cap(limited_api, rds):
    key, _ = ApiKeyStore(rds).create(["lifecycle"])
    with _client(limited_api, key) as http:
        ids = []
        for i in range(3):
            r = http.post(
                COUNT, json={"input": {"key": f"c{i}"}}, headers={"Idempotency-Key": f"k{i}"}
            )
            ids.append(r.json()["request_id"])
        refused = http.post(COUNT, json={"input": {"key": "c3"}})
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert "cap is 3" in refused.json()["detail"]
        assert _records(rds) == 3
        # Replaying an accepted request is not a new one: still answered.
        again = http.post(COUNT, json={"input": {"key": "c0"}}, headers={"Idempotency-Key": "k0"})
        assert again.status_code == 202 and again.json()["request_id"] == ids[0]
        # A request that ends frees its place.
        assert http.delete(f"/v1/requests/{ids[0]}").status_code == 200
        assert http.post(COUNT, json={"input": {"key": "c4"}}).status_code == 202


def test_cap_applies_to_the_python_client_and_frees_on_completion(
    jobcord_env, rds, start_worker, monkeypatch
):
    monkeypatch.setenv("JOBCORD_MAX_IN_FLIGHT_PER_APP", "2")
    client = RedisClient(load_settings())
    jobs.app.client = client
    try:
        first = jobs.count.async_run_remote("p", sleep_s=0.5)
        jobs.count.async_run_remote("p", sleep_s=0.5)
        with pytest.raises(TooManyRequests, match="lifecycle"):
            jobs.count.async_run_remote("p")
        start_worker()
        first.wait(20)
        assert jobs.count.async_run_remote("p").wait(20).status.value == "SUCCEEDED"
        assert rds.hget("jobcord:inflight", "lifecycle") == "0"
    finally:
        jobs.app.client = None


def test_keys_cli_sets_a_rate(jobcord_env):
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobcord.cli",
            "keys",
            "create",
            "--apps",
            "lifecycle",
            "--rate",
            "5",
        ],
        cwd=ROOT,
        env={**jobcord_env, "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "5 submissions/s" in made.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "jobcord.cli", "keys", "list"],
        cwd=ROOT,
        env=jobcord_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert " 5 " in listed.stdout


# -- waits: open event streams and waiting calls ---------------------------------------------
JOBS = "/v1/apps/lifecycle/jobs"


@pytest.fixture
def waits_api(jobcord_env):
    # More than redis-py's default pool of 100: the Follower's pool must be sized to the limit.
    env = {**jobcord_env, "JOBCORD_API_MAX_WAITS": "150", "JOBCORD_API_MAX_WAITS_PER_KEY": "130"}
    server = ApiServer(env, [])
    yield server
    server.stop()


def _many(server: ApiServer, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {key}"},
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
        timeout=30,
    )


def _open_streams(http: httpx.Client, stack: ExitStack, rid: str, n: int) -> None:
    for _ in range(n):
        r = stack.enter_context(http.stream("GET", f"/v1/requests/{rid}/events"))
        assert r.status_code == 200, r.read()


def test_open_streams_are_bounded_and_never_starve_submissions(waits_api, rds, start_worker):
    store = ApiKeyStore(rds)
    hog_key, hog = store.create(["lifecycle"])
    other_key, _ = store.create(["lifecycle"])
    start_worker()  # serves the cpu queue; nothing serves h100, so where_am_i stays QUEUED
    with (
        _many(waits_api, hog_key) as hog_http,
        _many(waits_api, other_key) as other_http,
        ExitStack() as hog_streams,
        ExitStack() as other_streams,
    ):
        rid = hog_http.post(f"{JOBS}/where_am_i/async_run_remote", json={"input": {}}).json()[
            "request_id"
        ]
        _open_streams(hog_http, hog_streams, rid, 130)
        refused = hog_http.get(f"/v1/requests/{rid}/events")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert hog.key_id in refused.json()["detail"]
        assert "JOBCORD_API_MAX_WAITS_PER_KEY" in refused.json()["detail"]
        # A waiting call of the same key is refused before anything is queued.
        before = _records(rds)
        waiting = hog_http.post(f"{JOBS}/count/run_remote", json={"input": {"key": "h"}})
        assert waiting.status_code == 429 and _records(rds) == before
        cord = hog_http.post("/apps/lifecycle/double", json={"x": 1})  # a cord waits too
        assert cord.status_code == 429 and _records(rds) == before
        # Another caller, while 130 streams are open: submissions and waits go through.
        done = other_http.post(
            f"{JOBS}/count/run_remote?wait_seconds=20", json={"input": {"key": "o"}}
        )
        assert done.status_code == 200 and done.json()["status"] == "SUCCEEDED", done.text
        assert other_http.post(COUNT, json={"input": {"key": "o"}}).status_code == 202
        # The whole API's limit: 150 places in all.
        _open_streams(other_http, other_streams, rid, 20)
        full = other_http.get(f"/v1/requests/{rid}/events")
        assert full.status_code == 429 and "(JOBCORD_API_MAX_WAITS)" in full.json()["detail"]
        before = _records(rds)
        assert (
            other_http.post(f"{JOBS}/count/run_remote", json={"input": {"key": "o"}}).status_code
            == 429
        )
        assert _records(rds) == before
        # Submitting never holds a place: still accepted, and no answer was a 5xx.
        assert other_http.post(COUNT, json={"input": {"key": "o2"}}).status_code == 202
        # The Python client over HTTP rides out a 429 on its event stream (it looks, then
        # follows again) rather than failing.
        jobs.app.client = HttpClient(waits_api.url, hog_key)
        try:
            assert jobs.count.async_run_remote("sdk").result(timeout=30) >= 1
        finally:
            jobs.app.client = None
        hog_streams.close()  # places come back when the streams end

        def reopened() -> bool:
            with hog_http.stream("GET", f"/v1/requests/{rid}/events") as r:
                return r.status_code == 200

        wait_for(reopened, 10, "the closed streams' places to come back")


def test_retry_is_admitted_like_a_submission(limited_api, rds):
    store = ApiKeyStore(rds)
    key, _ = store.create(["lifecycle"])
    with _client(limited_api, key) as http:
        ended = http.post(COUNT, json={"input": {"key": "r0"}}).json()["request_id"]
        assert http.delete(f"/v1/requests/{ended}").json()["status"] == "CANCELED"
        ids = [
            http.post(COUNT, json={"input": {"key": f"r{i}"}}).json()["request_id"]
            for i in (1, 2, 3)
        ]
        refused = http.post(f"/v1/requests/{ended}/retry")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert "cap is 3" in refused.json()["detail"]
        assert http.get(f"/v1/requests/{ended}").json()["status"] == "CANCELED"  # not requeued
        assert rds.hget("jobcord:inflight", "lifecycle") == "3"
        http.delete(f"/v1/requests/{ids[0]}")
        again = http.post(f"/v1/requests/{ended}/retry")
        assert again.status_code == 202 and again.json()["attempt"] == 2
    slow_key, slow = store.create(["lifecycle"], rate_per_s=0.5)  # a bucket of 1
    with _client(limited_api, slow_key) as http:
        http.delete(f"/v1/requests/{ended}")
        rated = http.post(f"/v1/requests/{ended}/retry")  # its first call: fine
        assert rated.status_code == 202
        http.delete(f"/v1/requests/{ended}")
        over = http.post(f"/v1/requests/{ended}/retry")
        assert over.status_code == 429 and "rate" in over.json()["detail"]
        assert slow.key_id in over.json()["detail"]
