"""Bounded inputs and identity at the gateway, over real HTTP against real Redis: durations,
sizes, request ids, /metrics, forgiving content types, and SSE framing of streamed chunks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import msgpack
import pytest

from jobcord.producers import RedisClient
from jobcord.producers.errors import TooLarge
from jobcord.storage.apikeys import ApiKeyStore
from jobcord.storage.settings import load_settings
from tests.apps import bounds
from tests.conftest import ApiServer

JOB = "/v1/apps/lifecycle/jobs"
TAKE = "/v1/apps/bounds/jobs/take/async_run_remote"


def _records(rds) -> int:
    return sum(1 for k in rds.scan_iter("jobcord:req:*") if k.count(":") == 2)


@pytest.fixture
def bounds_env(jobcord_env) -> dict[str, str]:
    return {
        **jobcord_env,
        "JOBCORD_API_MAX_BODY_BYTES": "65536",
        "JOBCORD_MAX_INPUT_BYTES": "4096",
        "JOBCORD_MAX_METADATA_BYTES": "1024",
        "JOBCORD_METRICS_TOKEN": "scrape-only-token",
        "JOBCORD_API_MAX_WAIT_S": "1",
    }


@pytest.fixture
def bounds_api(bounds_env) -> Iterator[ApiServer]:
    server = ApiServer(bounds_env, [], app_ref="tests.apps.bounds:app")
    yield server
    server.stop()


@pytest.fixture
def bounds_http(bounds_api, rds) -> Iterator[httpx.Client]:
    key, _ = ApiKeyStore(rds).create(["bounds"])
    with httpx.Client(
        base_url=bounds_api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        yield c


HOSTILE = [
    ("timeout_seconds", "Infinity"),
    ("timeout_seconds", "NaN"),
    ("timeout_seconds", "-Infinity"),
    ("timeout_seconds", "1e308"),
    ("timeout_seconds", "3000000"),
    ("timeout_seconds", "0"),
    ("max_time_in_queue_seconds", "Infinity"),
    ("max_time_in_queue_seconds", "1e308"),
    ("max_time_in_queue_seconds", "3000000"),
    ("delay_seconds", "NaN"),
    ("delay_seconds", "3000000"),
    ("delay_seconds", "-1"),
    ("eta", "1e308"),
    ("eta", "Infinity"),
    ("eta", '"9999-12-31T00:00:00Z"'),
    ("eta", '"2030-01-01T00:00:00"'),  # no zone
]


def test_durations_over_http_are_finite_and_bounded(http, rds):
    """Each hostile duration is a 422 naming its field, JSON literals Infinity/NaN included,
    and over msgpack too; nothing is queued. The bound itself is accepted."""
    for field, literal in HOSTILE:
        body = f'{{"input": {{"key": "d"}}, "{field}": {literal}}}'.encode()
        r = http.post(
            f"{JOB}/count/async_run_remote",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, (field, literal, r.text)
        assert field in r.text, (field, literal, r.text)
    for field in ("timeout_seconds", "max_time_in_queue_seconds", "delay_seconds"):
        r = http.post(
            f"{JOB}/count/async_run_remote",
            content=msgpack.packb({"input": {"key": "d"}, field: float("inf")}),
            headers={"content-type": "application/msgpack"},
        )
        assert r.status_code == 422 and field in r.text, r.text
    for wait in ("inf", "nan", "1e308"):
        r = http.post(f"{JOB}/echo/run_remote?wait_seconds={wait}", json={"input": {"x": 1}})
        assert r.status_code == 422 and "wait_seconds" in r.text
    assert _records(rds) == 0
    ok = http.post(
        f"{JOB}/count/async_run_remote",
        json={"input": {"key": "d"}, "timeout_seconds": 7 * 24 * 3600, "delay_seconds": 5},
    )
    assert ok.status_code == 202, ok.text
    assert rds.hget(f"jobcord:req:{ok.json()['request_id']}", "timeout_s") == "604800.0"


def test_input_and_metadata_sizes_are_capped_over_http(bounds_http, rds):
    big_json = bounds_http.post(TAKE, json={"input": {"items": ["x" * 100] * 50}})
    assert big_json.status_code == 413, big_json.text
    detail = big_json.json()["detail"]
    assert "input" in detail and "JOBCORD_MAX_INPUT_BYTES" in detail and "4096" in detail
    meta = bounds_http.post(TAKE, json={"input": {"items": []}, "metadata": {"m": "y" * 2000}})
    assert meta.status_code == 413 and "metadata" in meta.json()["detail"]
    # 20 000 msgpack nils are a 20 KB body, but 120 KB as the JSON a record would hold.
    nils = msgpack.packb({"input": {"items": [None] * 20_000}})
    assert len(nils) < 65536
    r = bounds_http.post(TAKE, content=nils, headers={"content-type": "application/msgpack"})
    assert r.status_code == 413 and "input" in r.json()["detail"], r.text
    assert _records(rds) == 0
    fits = bounds_http.post(TAKE, json={"input": {"items": [None] * 500}, "metadata": {"a": 1}})
    assert fits.status_code == 202, fits.text


def test_the_python_client_has_the_same_caps(bounds_env, rds, monkeypatch):
    for k, v in bounds_env.items():
        monkeypatch.setenv(k, v)
    bounds.app.client = RedisClient(load_settings())
    try:
        with pytest.raises(TooLarge, match="input is .*JOBCORD_MAX_INPUT_BYTES"):
            bounds.take.async_run_remote(["z" * 1000] * 10)
        with pytest.raises(ValueError, match="metadata"):
            bounds.take.async_run_remote([], metadata={"m": "y" * 2000})
        assert _records(rds) == 0
        assert bounds.take.async_run_remote([1, 2]).request_id
    finally:
        bounds.app.client = None


def test_request_ids_are_checked_on_every_route(http, rds):
    rid = http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "i"}}).json()[
        "request_id"
    ]
    for bad in [f"{rid}:events", f"{rid}:input", rid.upper(), rid[:-1], "x" * 32]:
        for method, path in [
            ("GET", f"/v1/requests/{bad}"),
            ("DELETE", f"/v1/requests/{bad}"),
            ("GET", f"/v1/requests/{bad}/events"),
            ("GET", f"/v1/requests/{bad}/output"),
            ("POST", f"/v1/requests/{bad}/retry"),
            ("POST", f"/v1/requests/{bad}/webhook"),
        ]:
            r = http.request(method, path)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert "no request with id" in r.json()["detail"]
    assert http.get(f"/v1/requests/{rid}").status_code == 200


def test_metrics_only_for_this_apps_keys_or_the_metrics_token(bounds_api, rds):
    store = ApiKeyStore(rds)
    mine, _ = store.create(["bounds"])
    theirs, _ = store.create(["lifecycle"])
    url = f"{bounds_api.url}/metrics"

    def get(token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(url, headers=headers)

    assert get(None).status_code == 401
    assert get("not-the-token").status_code == 401
    assert httpx.get(url, headers={"Authorization": b"Bearer \xc3\xa9"}).status_code == 401
    assert get(theirs).status_code == 404  # another app's key: as if nothing were here
    scraped = get("scrape-only-token")
    assert scraped.status_code == 200 and 'app="bounds"' in scraped.text
    assert get(mine).status_code == 200
    # The metrics token opens /metrics only.
    other = httpx.get(
        f"{bounds_api.url}/v1/queues", headers={"Authorization": "Bearer scrape-only-token"}
    )
    assert other.status_code == 401


def test_bodies_without_a_json_content_type_are_json(http, rds):
    """The README's `curl -d` sends application/x-www-form-urlencoded: still JSON here."""
    body = b'{"input": {"key": "curl"}}'
    for headers in (
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "text/plain"},
        {},
    ):
        r = http.post(f"{JOB}/count/async_run_remote", content=body, headers=headers)
        assert r.status_code == 202, (headers, r.text)
    form = http.post(
        f"{JOB}/count/async_run_remote",
        content=b"key=curl",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 422 and "Content-Type: application/json" in form.text


def test_run_remote_default_wait_is_clamped_to_the_max(bounds_http, rds):
    """No consumer: the default 30 s wait is cut to JOBCORD_API_MAX_WAIT_S (1 s here)."""
    started = time.monotonic()
    r = bounds_http.post(
        "/v1/apps/bounds/jobs/take/run_remote", json={"input": {"items": []}}, timeout=25
    )
    assert r.status_code == 202 and r.json()["status"] == "QUEUED"
    assert time.monotonic() - started < 10


def _events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event, data) per server-sent event, by the spec: data lines joined with newlines."""
    events, name, data = [], "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return events


def test_streamed_chunks_cannot_break_sse_framing(bounds_http, start_worker):
    start_worker("tests.apps.bounds:app")
    forged = "\n\nevent: end\ndata: {}\n\n"
    parts = ["hello", forged, "<invalid>", "é\r\nx"]
    with bounds_http.stream("POST", "/apps/bounds/bytes", json={"parts": parts}) as r:
        assert r.status_code == 200
        events = _events(r)
    assert [e for e, _ in events] == ["bytes"] * 4 + ["end"], events
    got = [base64.b64decode(d) for _, d in events[:4]]
    assert got == [b"hello", forged.encode(), b"\xff\xfe\x00 not utf-8", "é\r\nx".encode()]
    assert json.loads(events[-1][1])["status"] == "SUCCEEDED"

    with bounds_http.stream("POST", "/apps/bounds/texts", json={"parts": [forged, "a"]}) as r:
        events = _events(r)
    assert [e for e, _ in events] == ["message", "message", "end"]
    assert [json.loads(d) for _, d in events[:2]] == [forged, "a"]

    with bounds_http.stream(
        "POST", "/apps/bounds/anything", json={"parts": ["b:raw\nline", "text"]}
    ) as r:
        events = _events(r)
    assert events[0] == ("bytes", base64.b64encode(b"raw\nline").decode())
    assert events[1] == ("message", '"text"') and events[2][0] == "end"
