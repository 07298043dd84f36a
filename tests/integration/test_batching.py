"""max_batch_size: waiting requests share one call; each keeps its own record and outcome."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from jobcord.producers import InputValidationError, JobFailed
from jobcord.storage.statuses import Status
from tests.apps import batched
from tests.conftest import ApiServer, free_port, wait_for

APP = "tests.apps.batched:app"


def test_waiting_requests_share_one_call_and_each_gets_its_own_output(client, rds, start_worker):
    port = free_port()
    start_worker(APP, "--metrics-port", str(port))
    handles = [batched.double.async_run_remote(x) for x in (1, 2, 3, 13, 5)]
    assert [h.result(timeout=20) for h in handles if h is not handles[3]] == [2, 4, 6, 10]
    with pytest.raises(ValueError, match="13 is unlucky"):  # refused alone
        handles[3].result(timeout=20)
    assert rds.lrange("jobcord:test:calls:double", 0, -1) == ["5"]  # one call for all five
    records = [h.status() for h in handles]
    assert {r.batch_size for r in records} == {5}
    assert sorted(r.batch_position for r in records) == [0, 1, 2, 3, 4]
    assert records[3].status is Status.FAILED and records[0].status is Status.SUCCEEDED

    def scraped() -> str | None:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return text if 'jobcord_batch_size_count{app="batched",job="double"} 1.0' in text else None

    text = wait_for(scraped, 20, "the batch in the consumer's metrics")
    assert 'jobcord_batch_size_sum{app="batched",job="double"} 5.0' in text


def test_a_lone_request_waits_no_longer_than_the_batch_wait(client, start_worker):
    start_worker(APP)
    batched.double.run_remote(1)  # warm
    started = time.monotonic()
    assert batched.double.run_remote(21) == 42
    assert time.monotonic() - started < 1.5  # 300 ms of batch wait, and the round trip


def test_callers_pass_one_item_validated_against_the_element_type(client, start_worker):
    with pytest.raises(InputValidationError, match="text"):
        batched.lengths.async_run_remote({"nope": 1})
    start_worker(APP)
    assert batched.lengths.run_remote({"text": "four"}) == 4
    assert batched.lengths.run_remote(batched.Item(text="sixsix")) == 6


def test_a_timeout_ends_each_member_timed_out(client, start_worker):
    start_worker(APP)
    handles = [batched.nap.async_run_remote(s) for s in (5.0, 0.1)]
    assert [h.wait(20).status for h in handles] == [Status.TIMED_OUT, Status.TIMED_OUT]


def test_a_raised_error_retries_each_member_by_its_own_policy(client, rds, start_worker):
    start_worker(APP)
    handles = [batched.flaky.async_run_remote(k) for k in ("a", "b")]
    assert [h.result(timeout=20) for h in handles] == ["a", "b"]
    assert {h.status().failures for h in handles} == {1}


def test_a_canceled_queued_request_never_runs(client, rds, start_worker):
    handle = batched.double.async_run_remote(7)
    assert handle.cancel() is Status.CANCELED
    start_worker(APP)
    assert batched.double.run_remote(8) == 16
    assert rds.lrange("jobcord:test:calls:double", 0, -1) == ["1"]  # 7 never ran
    assert handle.status().status is Status.CANCELED


def test_a_batched_cord_answers_each_caller(jobcord_env, start_worker):
    start_worker(APP)
    server = ApiServer(jobcord_env, ["--no-auth"], APP)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            replies = [http.post("/apps/batched/lengths", json={"texts": t}) for t in ("ab", "xyz")]
            schema = http.get("/openapi.json").json()
    finally:
        server.stop()
    assert [r.json() for r in replies] == [2, 3]
    assert "texts" in json.dumps(schema)  # the per-item input: a string, not a list


def test_a_failed_member_raises_jobfailed_too(client, start_worker):
    start_worker(APP)
    with pytest.raises(JobFailed):
        batched.double.run_remote(13)
