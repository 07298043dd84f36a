"""No request input produces a 500: random and hostile bodies against every route."""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import wait_for

HOSTILE = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b'"x"',
    b"1e999",
    b"NaN",
    b"-0",
    b"\xff\xfe",
    b"{" * 5000,
    b"[" * 20000,
    b'{"input": ' + b"[" * 20000,
    b'{"input": {"x": 1e400}}',
    b'{"input": {"x": 123456789012345678901234567890}}',
    b'{"input": {"x": null}}',
    b'{"input": {"x": 1}, "metadata": "not a dict"}',
    b'{"input": {"x": 1}, "priority": "0"}',
    b'{"input": {"x": 1}, "webhook_endpoint": 5}',
    b'{"input": {"p": {"x": [], "y": {}}}}',
    b'{"input": {"\\u0000": 1}}',
    b'{"input": {"x": 1, "tag": "\\ud800"}}',
    b'{"x": 1}',
    b'{"n": -5}',
    b'{"n": 1e308, "delay_s": -1}',
    b'{"seconds": "inf"}',
]
PATHS = [
    "/v1/apps/lifecycle/jobs/echo/async_run_remote",
    "/v1/apps/lifecycle/jobs/typed/async_run_remote",
    "/v1/apps/lifecycle/jobs/echo/run_remote?wait_seconds=0",
    "/v1/apps/lifecycle/jobs/echo/run_remote?wait_seconds=nan",
    "/v1/apps/lifecycle/jobs/echo/run_remote?wait_seconds=inf",
    "/apps/lifecycle/double",
    "/apps/lifecycle/tokens",
    "/v1/apps/lifecycle/jobs/%00/async_run_remote",
]


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.choice(
        ["int", "float", "str", "list", "dict", "null", "bool"]
        if depth < 4
        else ["int", "str", "null"]
    )
    return {
        "int": lambda: rng.choice([0, -1, 2**63, 7]),
        "float": lambda: rng.choice([0.5, -1e300, 3.0]),
        "str": lambda: rng.choice(["", "x", "é" * 10, "0"]),
        "list": lambda: [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))],
        "dict": lambda: {
            rng.choice(["input", "x", "n", "p", "priority", "metadata", "tag"]): _random_json(
                rng, depth + 1
            )
            for _ in range(rng.randint(0, 3))
        },
        "null": lambda: None,
        "bool": lambda: rng.choice([True, False]),
    }[kind]()


@pytest.mark.parametrize("path", PATHS)
def test_hostile_bodies_never_500(http, start_worker, path):
    start_worker()
    for body in HOSTILE:
        r = http.post(
            path,
            content=body,
            headers={"content-type": "application/json", "Idempotency-Key": b"k\xc3\xa9 x"},
        )
        assert r.status_code < 500, (path, body[:60], r.status_code, r.text[:300])


def test_random_bodies_never_500(http, start_worker):
    start_worker()
    rng = random.Random(1234)
    for _ in range(150):
        path = rng.choice(PATHS[:3] + PATHS[5:6])
        r = http.post(
            path,
            content=json.dumps(_random_json(rng)).encode(),
            headers={"content-type": "application/json"},
        )
        assert r.status_code < 500, (path, r.text[:300])
    for rid in ["", "x" * 5000, "..%2F..%2Fetc", "%00", "a:b:c"]:
        assert http.get(f"/v1/requests/{rid}").status_code < 500
        assert http.delete(f"/v1/requests/{rid}").status_code < 500
    wait_for(lambda: http.get("/healthz").status_code == 200, 5, "the API to stay up")
