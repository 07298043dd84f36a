"""Cords over HTTP: through the queue to a consumer and back, sync and streaming."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from jobcord.producers import HttpClient, JobFailed, set_default_client
from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs
from tests.conftest import wait_for


def test_sync_cord_round_trip(http, start_worker):
    start_worker()
    r = http.post("/apps/lifecycle/double", json={"x": 21})
    assert r.status_code == 200 and r.json() == {"y": 42}
    rid = r.headers["x-request-id"]
    assert http.get(f"/v1/requests/{rid}").json()["status"] == "SUCCEEDED"
    g = http.get("/apps/lifecycle/hello", params={"name": "cord"})
    assert g.status_code == 200 and g.json() == "hello cord"


def test_failing_cord_answers_500_with_the_remote_error(http, start_worker):
    start_worker()
    r = http.post("/apps/lifecycle/double", json={"x": -1})
    assert r.status_code == 500
    body = r.json()
    assert body["status"] == "FAILED" and body["error"]["type"] == "ValueError"
    assert "must not be negative" in body["error"]["message"]


def test_streaming_cord_relays_each_item_as_it_is_produced(http, start_worker):
    start_worker()
    arrivals, items = [], []
    with http.stream("POST", "/apps/lifecycle/tokens", json={"n": 4, "delay_s": 0.3}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                if event == "end":
                    assert json.loads(line[5:])["status"] == "SUCCEEDED"
                    break
                items.append(json.loads(line[5:]))
                arrivals.append(time.monotonic())
    assert items == [{"i": i} for i in range(4)]
    # Items arrive as produced (about 0.3 s apart), not all at once at the end.
    assert arrivals[-1] - arrivals[0] > 0.6


def test_client_that_disconnects_cancels_its_request(http, rds, start_worker):
    start_worker()
    with http.stream(
        "POST", "/apps/lifecycle/tokens", json={"n": 100, "delay_s": 0.2, "key": "gone"}
    ) as r:
        rid = r.headers["x-request-id"]
        for line in r.iter_lines():
            if line.startswith("data:"):
                break  # first item seen: hang up
    rec = wait_for(
        lambda: (b := http.get(f"/v1/requests/{rid}").json())["status"] == "CANCELED" and b,
        10,
        "the request to be canceled",
    )
    assert rec["error"]["type"] == "Canceled"
    time.sleep(0.5)
    produced = int(rds.get("jobcord:test:tokens:gone"))
    time.sleep(0.6)
    assert int(rds.get("jobcord:test:tokens:gone")) == produced < 99  # really stopped


def test_sync_cord_caller_disconnect_cancels(http, api_server, api_key, start_worker):
    start_worker()
    with (
        httpx.Client(
            base_url=api_server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=1.0
        ) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post("/apps/lifecycle/nap", json={"seconds": 30})

    def canceled_nap():
        for key in rds_keys(http):
            body = http.get(f"/v1/requests/{key}").json()
            if body["job"] == "nap":
                return body if body["status"] == "CANCELED" else None
        return None

    rec = wait_for(canceled_nap, 10, "the abandoned cord request to be canceled")
    assert rec["error"]["type"] == "Canceled"


def rds_keys(http):
    import redis

    from jobcord.storage.settings import load_settings

    r = redis.Redis.from_url(load_settings().redis_url, decode_responses=True)
    return [k.split(":")[2] for k in r.scan_iter("jobcord:req:*") if k.count(":") == 2]


def test_http_client_sdk_end_to_end(api_server, api_key, start_worker):
    start_worker()
    client = HttpClient(api_server.url, api_key)
    set_default_client(client)
    try:
        assert jobs.typed.run_remote({"x": 1, "y": 2}, scale=3) == jobs.Point(x=3, y=6)
        assert jobs.blob.run_remote(1000) == bytes(i % 251 for i in range(1000))
        with pytest.raises(JobFailed, match="bad thing: over http"):
            jobs.always_fails.run_remote("over http")
        h = jobs.slow.async_run_remote(30)
        wait_for(lambda: h.status().status is Status.IN_PROGRESS, 20, "start")
        h.cancel()
        assert h.wait(10).status is Status.CANCELED
        first = jobs.count.async_run_remote("http-idem", idempotency_key="same")
        again = jobs.count.async_run_remote("http-idem", idempotency_key="same")
        assert first.request_id == again.request_id and not again.created
    finally:
        set_default_client(None)
        client.close()


def test_http_client_retries_transient_network_errors(api_server, api_key, start_worker):
    start_worker()
    calls = {"n": 0}

    class Flaky(httpx.HTTPTransport):
        def handle_request(self, request):
            calls["n"] += 1
            if calls["n"] <= 2:
                raise httpx.ConnectError("connection refused (injected)")
            return super().handle_request(request)

    client = HttpClient(api_server.url, api_key)
    client.http = httpx.Client(
        base_url=api_server.url, transport=Flaky(), headers={"Authorization": f"Bearer {api_key}"}
    )
    set_default_client(client)
    try:
        assert jobs.echo.run_remote(5)["x"] == 5
        assert calls["n"] > 2
    finally:
        set_default_client(None)


def test_a_cord_with_no_consumer_answers_503_at_once_and_queues_nothing(http, rds):
    started = time.monotonic()
    reply = http.post("/apps/lifecycle/double", json={"x": 2})
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "5"
    assert "no consumer of app 'lifecycle' is running" in reply.json()["detail"]
    assert time.monotonic() - started < 5
    assert not rds.keys("jobcord:req:*")
