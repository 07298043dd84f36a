"""Fairness: a per-key submission rate and a per-app cap on requests in flight (429 +
Retry-After), so that one tenant cannot monopolise a GPU class."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from producers import RedisClient
from storage.apikeys import ApiKeyStore
from storage.errors import TooManyRequests
from storage.settings import load_settings
from tests.apps import lifecycle as jobs
from tests.conftest import ROOT, ApiServer

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
