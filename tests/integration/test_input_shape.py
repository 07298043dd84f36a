"""One input shape everywhere: the SDK, the CLI and HTTP take the same JSON object (a model
job's fields, or the parameters by name), and store the same input."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from jobcord.producers import InputValidationError
from tests.apps import lifecycle as jobs
from tests.conftest import ROOT

BOX = {"box": {"w": 2, "h": 3}}  # what is stored: the job's parameters
COUNT = {"key": "k", "sleep_s": 0.0}


def _stored(rds, request_id: str) -> dict:
    return json.loads(rds.hget(f"jobcord:req:{request_id}", "input"))


def test_the_sdk_takes_the_input_object(client, rds):
    same = [
        jobs.area.async_run_remote({"w": 2, "h": 3}),  # the input object
        jobs.area.async_run_remote(jobs.Box(w=2, h=3)),  # a Python call
        jobs.area.async_run_remote(box={"w": 2, "h": 3}),
        jobs.area.async_run_remote({"box": {"w": 2, "h": 3}}),  # the older wrapped form
    ]
    assert [_stored(rds, h.request_id) for h in same] == [BOX] * 4
    scalars = [
        jobs.count.async_run_remote({"key": "k"}),  # the input object
        jobs.count.async_run_remote("k"),
        jobs.count.async_run_remote(key="k"),
    ]
    assert [_stored(rds, h.request_id) for h in scalars] == [COUNT] * 3
    with pytest.raises(InputValidationError, match="w: Field required"):
        jobs.area.async_run_remote({"h": 3})


def test_the_cli_takes_the_same_object(client, rds, jobcord_env):
    def submit(job: str, payload: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "jobcord.cli", "submit", "tests.apps.lifecycle:app", job,
             "--input", payload],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    box = submit("area", '{"w": 2, "h": 3}')
    assert box.returncode == 0, box.stderr
    assert _stored(rds, box.stdout.split()[0]) == BOX
    count = submit("count", '{"key": "k"}')
    assert count.returncode == 0, count.stderr
    assert _stored(rds, count.stdout.split()[0]) == COUNT
    bad = submit("area", '{"h": 3}')
    assert bad.returncode == 2 and "w: Field required" in bad.stderr, bad.stderr


def test_http_takes_the_same_object(api_server, api_key, rds):
    http = httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {api_key}"})
    url = "/v1/apps/lifecycle/jobs/{}/async_run_remote"
    for body in ({"w": 2, "h": 3}, {"box": {"w": 2, "h": 3}}):
        reply = http.post(url.format("area"), json={"input": body})
        assert reply.status_code == 202, reply.text
        assert _stored(rds, reply.json()["request_id"]) == BOX
    reply = http.post(url.format("count"), json={"input": {"key": "k"}})
    assert _stored(rds, reply.json()["request_id"]) == COUNT
    bad = http.post(url.format("area"), json={"input": {"h": 3}})
    assert bad.status_code == 422
    assert [e["loc"] for e in bad.json()["detail"]] == [["body", "input", "w"]], bad.text
    # OpenAPI shows the object callers send: the model's fields.
    schema = http.get("/openapi.json").json()["components"]["schemas"]
    body = schema["lifecycle_area_request"]["properties"]["input"]
    assert "Box" in json.dumps(body), body
