"""The HTTP gateway over real HTTP (uvicorn on a free port) against real Redis."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from jobcord.producers.gateway.auth import VERIFIED_FOR_S
from tests.conftest import wait_for

JOB = "/v1/apps/lifecycle/jobs"


def _wait_done(http: httpx.Client, request_id: str, timeout: float = 20) -> dict:
    def done():
        body = http.get(f"/v1/requests/{request_id}").json()
        return body if body["status"] not in ("QUEUED", "IN_PROGRESS") else None

    return wait_for(done, timeout, f"request {request_id} to end", step=0.05)


def test_healthz_needs_no_key_everything_else_does(api_server, api_key):
    # No scheduler or consumer runs in this test: nothing to report, nothing stale.
    health = httpx.get(f"{api_server.url}/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "processes": {}, "stale_loops": []}
    for method, path in [
        ("GET", "/v1/queues"),
        ("GET", "/metrics"),
        ("POST", f"{JOB}/echo/async_run_remote"),
        ("GET", "/v1/requests/x"),
        ("POST", "/apps/lifecycle/double"),
    ]:
        r = httpx.request(method, f"{api_server.url}{path}")
        assert r.status_code == 401, (path, r.text)
        assert "Bearer" in r.json()["detail"]
    r = httpx.get(f"{api_server.url}/v1/queues", headers={"Authorization": "Bearer jc_nope_x"})
    assert r.status_code == 401 and "invalid or revoked" in r.json()["detail"]


def test_async_run_remote_then_status(http, start_worker):
    start_worker()
    r = http.post(
        f"{JOB}/echo/async_run_remote",
        json={"input": {"x": 4, "tag": "t"}, "metadata": {"team": "vision"}},
    )
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "QUEUED" and body["created"] is True
    done = _wait_done(http, body["request_id"])
    assert done["status"] == "SUCCEEDED" and done["output"]["x"] == 4
    assert done["metadata"] == {"team": "vision"} and done["attempt"] == 1
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert "input" not in done and "lease" not in done


def test_idempotency_key_header(http, rds):
    h = {"Idempotency-Key": "order-7"}
    first = http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "a"}}, headers=h)
    again = http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "a"}}, headers=h)
    assert first.status_code == again.status_code == 202
    assert again.json()["request_id"] == first.json()["request_id"]
    assert again.json()["created"] is False
    other = http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "b"}}, headers=h)
    assert other.status_code == 422 and "different input" in other.json()["detail"]


def test_idempotency_race_over_http(http, rds):
    ids, barrier = [], threading.Barrier(12)

    def submit():
        barrier.wait()
        r = http.post(
            f"{JOB}/count/async_run_remote",
            json={"input": {"key": "r"}},
            headers={"Idempotency-Key": "race"},
        )
        ids.append(r.json()["request_id"])

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 12 and len(set(ids)) == 1
    assert rds.llen("jobcord.dq:jobcord.lifecycle.cpu") == 1


def test_run_remote_waits_or_answers_202(http, start_worker):
    start_worker()
    r = http.post(f"{JOB}/echo/run_remote?wait_seconds=20", json={"input": {"x": 1}})
    assert r.status_code == 200 and r.json()["status"] == "SUCCEEDED"
    assert r.json()["output"]["x"] == 1
    r = http.post(f"{JOB}/slow/run_remote?wait_seconds=0.3", json={"input": {"seconds": 2}})
    assert r.status_code == 202 and r.json()["status"] in ("QUEUED", "IN_PROGRESS")
    assert _wait_done(http, r.json()["request_id"])["output"] == 2


@pytest.mark.parametrize(
    ("path", "kwargs", "code", "needle"),
    [
        (
            f"{JOB}/echo/async_run_remote",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "JSON decode error",
        ),
        (f"{JOB}/echo/async_run_remote", {"json": {"input": {"x": "abc"}}}, 422, "x"),
        (f"{JOB}/echo/async_run_remote", {"json": {"input": {}}}, 422, "Field required"),
        (f"{JOB}/echo/async_run_remote", {"json": {"input": {"x": 1}, "bogus": 1}}, 422, "bogus"),
        (
            f"{JOB}/echo/async_run_remote",
            {"json": {"input": {"x": 1}, "priority": 5}},
            422,
            "priority",
        ),
        (
            f"{JOB}/echo/async_run_remote",
            {"json": {"input": {"x": 1}, "max_time_in_queue_seconds": -1}},
            422,
            "max_time_in_queue_seconds",
        ),
        (
            f"{JOB}/stuck_in_c/async_run_remote",
            {"json": {"input": {"key": "k", "seconds": 1}, "timeout_seconds": 99}},
            422,
            "exceeds the job's own",
        ),
        (f"{JOB}/echo/async_run_remote", {"json": [1, 2]}, 422, "body"),
        (
            f"{JOB}/echo/async_run_remote",
            {"json": {"input": {"x": 1}, "delay_seconds": -1}},
            422,
            "delay_seconds",
        ),
        (f"{JOB}/nope/async_run_remote", {"json": {"input": {}}}, 404, "has no job 'nope'"),
        (f"{JOB}/echo/explode", {"json": {"input": {"x": 1}}}, 404, "no such call"),
        (
            "/v1/apps/other/jobs/echo/async_run_remote",
            {"json": {"input": {"x": 1}}},
            404,
            "no app named 'other'",
        ),
        (
            f"{JOB}/echo/run_remote?wait_seconds=-1",
            {"json": {"input": {"x": 1}}},
            422,
            "wait_seconds",
        ),
        (
            f"{JOB}/echo/run_remote?wait_seconds=abc",
            {"json": {"input": {"x": 1}}},
            422,
            "wait_seconds",
        ),
        (
            f"{JOB}/echo/run_remote?wait_seconds=100000",
            {"json": {"input": {"x": 1}}},
            422,
            "wait_seconds",
        ),
        (
            f"{JOB}/echo/async_run_remote",
            {"json": {"input": {"x": 1, "tag": "y" * 70000}}},
            413,
            "larger than",
        ),
        ("/apps/lifecycle/double", {"json": {"x": "two"}}, 422, "x"),
        (
            "/apps/lifecycle/double",
            {"content": b"[", "headers": {"content-type": "application/json"}},
            422,
            "",
        ),
        ("/apps/lifecycle/nope", {"json": {}}, 404, ""),
    ],
)
def test_bad_input_gets_a_named_4xx_and_nothing_is_queued(http, rds, path, kwargs, code, needle):
    r = http.post(path, **kwargs)
    assert r.status_code == code, r.text
    assert needle in r.text
    assert r.headers["content-type"].startswith("application/json")
    assert list(rds.scan_iter("jobcord:req:*")) == []
    assert rds.llen("jobcord.dq:jobcord.lifecycle.cpu") == 0


def test_body_without_content_length_is_limited_too(api_server, api_key):
    def chunks():
        for _ in range(20):
            yield b"x" * 8192

    r = httpx.post(
        f"{api_server.url}{JOB}/echo/async_run_remote",
        content=chunks(),
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert r.status_code == 413


def test_cancel_queued_running_and_finished(http, start_worker):
    queued = http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "c"}}).json()
    r = http.delete(f"/v1/requests/{queued['request_id']}")
    assert r.status_code == 200 and r.json()["status"] == "CANCELED"
    start_worker()
    running = http.post(f"{JOB}/slow/async_run_remote", json={"input": {"seconds": 30}}).json()
    rid = running["request_id"]
    wait_for(lambda: http.get(f"/v1/requests/{rid}").json()["status"] == "IN_PROGRESS", 20, "start")
    bad = http.delete(f"/v1/requests/{rid}", params={"wait": 61})
    assert bad.status_code == 422 and "wait" in bad.text
    # The answer is the status the cancel led to: the consumer stopped it (within its grace).
    assert http.delete(f"/v1/requests/{rid}").json()["status"] == "CANCELED"
    assert _wait_done(http, rid, 10)["status"] == "CANCELED"
    other = http.post(f"{JOB}/slow/async_run_remote", json={"input": {"seconds": 30}}).json()
    oid = other["request_id"]
    wait_for(lambda: http.get(f"/v1/requests/{oid}").json()["status"] == "IN_PROGRESS", 20, "start")
    told = http.delete(f"/v1/requests/{oid}", params={"wait": 0}).json()  # no wait: still stopping
    assert told == {"request_id": oid, "status": "IN_PROGRESS", "cancel_requested": True}
    assert _wait_done(http, oid, 10)["status"] == "CANCELED"
    again = http.delete(f"/v1/requests/{rid}")
    assert again.status_code == 409 and "already ended CANCELED" in again.json()["detail"]
    assert http.delete("/v1/requests/nope").status_code == 404


def test_expired_request_never_runs(http, rds, start_worker):
    r = http.post(
        f"{JOB}/count/async_run_remote",
        json={"input": {"key": "exp"}, "max_time_in_queue_seconds": 0.2},
    ).json()
    time.sleep(0.5)
    start_worker()
    assert _wait_done(http, r["request_id"])["status"] == "EXPIRED"
    assert rds.get("jobcord:test:count:exp") is None


def test_status_events_as_server_sent_events(http, start_worker):
    start_worker()
    rid = http.post(f"{JOB}/progress/async_run_remote", json={"input": {"steps": 2}}).json()[
        "request_id"
    ]
    events = []
    with http.stream("GET", f"/v1/requests/{rid}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    statuses = [e["status"] for e in events]
    assert statuses[0] == "QUEUED" and statuses[-1] == "SUCCEEDED"
    assert [e.get("progress") for e in events if "progress" in e] == [0.5, 1.0]
    assert all(isinstance(e["attempt"], int) and isinstance(e["at"], float) for e in events)


def test_local_results_download_through_the_api_not_file_urls(http, api_server, start_worker):
    """Without a bucket, objects live on the API's disk: their URLs are the API's routes."""
    start_worker()
    rid = http.post(f"{JOB}/attempt_blob/async_run_remote", json={"input": {"seconds": 0}})
    rid = rid.json()["request_id"]
    body = _wait_done(http, rid)
    assert body["status"] == "SUCCEEDED", body
    assert body["result"]["url"] == f"{api_server.url}/v1/requests/{rid}/output"
    [who] = body["files"]
    assert who["url"] == f"{api_server.url}/v1/requests/{rid}/files/who.txt"
    output = http.get(body["result"]["url"])
    assert output.content == b"attempt 1"
    got = http.get(who["url"])
    for served in (output, got):  # a job's bytes never run as a page of the API's origin
        assert served.headers["content-security-policy"] == "sandbox"
        assert served.headers["x-content-type-options"] == "nosniff"
    assert got.status_code == 200 and got.text == "attempt 1"
    assert 'filename="who.txt"' in got.headers["content-disposition"]
    for name in ("nope.txt", "../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd"):
        r = http.get(f"/v1/requests/{rid}/files/{name}")
        assert r.status_code == 404, (name, r.text)
    assert httpx.get(who["url"]).status_code == 401  # the key is needed, as everywhere


def test_queues_show_counts_and_consumers(http, start_worker):
    for _ in range(3):
        http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "q", "sleep_s": 0}})
    [cpu] = [q for q in http.get("/v1/queues").json()["queues"] if q["gpu_class"] == "cpu"]
    assert (cpu["queued"], cpu["in_progress"], cpu["consumers"]) == (3, 0, [])
    start_worker()
    http.post(f"{JOB}/slow/async_run_remote", json={"input": {"seconds": 5}})

    def busy():
        [q] = [q for q in http.get("/v1/queues").json()["queues"] if q["gpu_class"] == "cpu"]
        return q if q["in_progress"] == 1 and q["queued"] == 0 else None

    cpu = wait_for(busy, 20, "the slow job to run")
    [consumer] = cpu["consumers"]
    assert consumer["app"] == "lifecycle" and consumer["slots"] == 1
    h100 = [q for q in http.get("/v1/queues").json()["queues"] if q["gpu_class"] == "h100"]
    assert h100[0]["consumers"] == []


def test_keys_are_scoped_to_apps(http, api_server, rds, start_worker):
    from jobcord.storage.apikeys import ApiKeyStore

    rid = http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "s"}}).json()[
        "request_id"
    ]
    other_key, _ = ApiKeyStore(rds).create(["other-app"])
    other = httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {other_key}"})
    mine = other.get(f"/v1/requests/{rid}")
    unknown = other.get("/v1/requests/0123456789abcdef")
    assert mine.status_code == unknown.status_code == 404
    assert mine.json()["detail"].replace(rid, "ID") == unknown.json()["detail"].replace(
        "0123456789abcdef", "ID"
    )
    assert other.delete(f"/v1/requests/{rid}").status_code == 404
    assert (
        other.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "s"}}).status_code == 404
    )
    assert other.post("/apps/lifecycle/double", json={"x": 1}).status_code == 404


def test_keys_cli_create_and_revoke(api_server, jobcord_env):
    import os
    import subprocess
    import sys

    env = {**os.environ, **jobcord_env}
    made = subprocess.run(
        [sys.executable, "-m", "jobcord.cli", "keys", "create", "--apps", "lifecycle"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip()
    assert key.startswith("jc_") and "cannot be shown again" in made.stderr
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{api_server.url}/v1/queues", headers=headers).status_code == 200
    key_id = key.split("_")[1]
    listed = subprocess.run(
        [sys.executable, "-m", "jobcord.cli", "keys", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert key_id in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    assert httpx.get(f"{api_server.url}/v1/queues", headers=headers).status_code == 200
    subprocess.run(
        [sys.executable, "-m", "jobcord.cli", "keys", "revoke", key_id],
        env=env,
        check=True,
        capture_output=True,
    )
    revoked_at = time.monotonic()
    # A verified key is trusted VERIFIED_FOR_S without asking Redis: refused within that.
    wait_for(
        lambda: httpx.get(f"{api_server.url}/v1/queues", headers=headers).status_code == 401,
        VERIFIED_FOR_S + 2,
        "the revoked key to be refused",
    )
    assert time.monotonic() - revoked_at <= VERIFIED_FOR_S + 2


def test_metrics_and_openapi(http):
    http.post(f"{JOB}/count/async_run_remote", json={"input": {"key": "m"}})
    metrics = http.get("/metrics").text
    assert 'jobcord_api_submissions_total{app="lifecycle",job="count",outcome="created"} 1.0' in (
        metrics
    )
    spec = http.get("/openapi.json").json()
    body = spec["components"]["schemas"]
    assert "lifecycle_typed_request" in body and "typed_input" in json.dumps(body)
    cord = spec["paths"]["/apps/lifecycle/double"]["post"]
    assert cord["requestBody"]["content"]["application/json"]["schema"]["properties"]["x"]


def test_typos_get_a_did_you_mean(api_server, api_key):
    http = httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {api_key}"})
    job = http.post("/v1/apps/lifecycle/jobs/ecoh/async_run_remote", json={"input": {}})
    assert job.status_code == 404 and "did you mean 'echo'" in job.json()["detail"]
    cord = http.post("/apps/lifecycle/doubel", json={"x": 1})
    assert cord.status_code == 404
    assert "did you mean POST /apps/lifecycle/double" in cord.json()["detail"], cord.text


def test_on_complete_over_http_kept_and_bounded(http):
    """A dramatiq actor as the completion target over HTTP; bad ones are 422 naming the field."""
    target = {"actor": "done", "queue": "cpu", "args": ["t"]}
    made = http.post(
        f"{JOB}/echo/async_run_remote", json={"input": {"x": 1}, "on_complete": target}
    )
    assert made.status_code == 202, made.text
    record = http.get(f"/v1/requests/{made.json()['request_id']}").json()
    assert record["on_complete"] == {**target, "kwargs": {}, "options": {}}
    assert record["webhook_status"] == "PENDING"
    for bad, says in [
        ({"actor": "no spaces"}, '"on_complete","actor"'),
        ({"actor": "a", "options": {"jobcord_completion": {}}}, "jobcord's own"),
    ]:
        refused = http.post(
            f"{JOB}/echo/async_run_remote", json={"input": {"x": 1}, "on_complete": bad}
        )
        assert refused.status_code == 422 and says in refused.text, refused.text
    both = {"input": {"x": 1}, "on_complete": target, "webhook_endpoint": "https://example.com/h"}
    refused = http.post(f"{JOB}/echo/async_run_remote", json=both)
    assert refused.status_code == 422 and "not both" in refused.text
