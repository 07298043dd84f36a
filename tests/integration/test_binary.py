"""Binary payloads: bytes and numpy arrays travel raw (msgpack) through the queue."""

from __future__ import annotations

import numpy as np
import pytest

from examples import arrays as binary
from jobcord.storage.statuses import Status

APP = "examples.arrays:app"


def test_array_round_trip_is_exact_and_raw(client, rds, start_worker):
    start_worker(APP)
    a = np.arange(250_000, dtype=np.float32).reshape(500, 500)
    handle = binary.scale.async_run_remote(a, factor=0.5)
    out = handle.result(timeout=30)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (500, 500)
    assert np.array_equal(out, a * 0.5)
    rec = handle.status()
    assert rec.input_format == "msgpack" and rec.input is None
    stored_input = rds.strlen(f"jobcord:req:{handle.request_id}:input")
    assert a.nbytes < stored_input < a.nbytes + 200  # raw bytes, not base64 (4/3 larger)
    assert rec.result.content_type == "application/msgpack"
    assert a.nbytes < rec.result.size < a.nbytes + 200


def test_bytes_input_and_nested_binary_output(client, start_worker):
    start_worker(APP)
    data = bytes(range(256)) * 10  # not valid UTF-8: JSON could not carry it as text
    assert binary.checksum.run_remote(data) == {"len": 2560, "sum": sum(data) % 65536}
    a = np.ones((2, 3), dtype=np.int16)
    out = binary.mixed.run_remote(b"\x00\xffabc", a)
    assert out["blob"] == b"cba\xff\x00" and out["note"] == "nested binary in a dict"
    assert out["a"].shape == (3, 2) and out["a"].dtype == np.int16


def test_binary_input_idempotency(client, start_worker):
    a = np.zeros(10, dtype=np.float64)
    first = binary.scale.async_run_remote(a, idempotency_key="arr-1")
    again = binary.scale.async_run_remote(a.copy(), idempotency_key="arr-1")
    assert again.request_id == first.request_id and not again.created
    import pytest

    from jobcord.storage.errors import IdempotencyConflict

    with pytest.raises(IdempotencyConflict):
        binary.scale.async_run_remote(a + 1, idempotency_key="arr-1")
    start_worker(APP)
    assert first.wait(30).status is Status.SUCCEEDED


def test_wrong_type_is_refused_before_queueing(client):
    import pytest

    from jobcord.producers import InputValidationError

    with pytest.raises(InputValidationError, match="a"):
        binary.scale.async_run_remote([1, 2, 3])


@pytest.fixture
def binary_api(jobcord_env, rds):
    from jobcord.storage.apikeys import ApiKeyStore
    from tests.conftest import ApiServer

    server = ApiServer(jobcord_env, [], app_ref=APP)
    key, _ = ApiKeyStore(rds).create(["binary"])
    yield server, key
    server.stop()


def test_msgpack_over_http_and_the_http_client(binary_api, start_worker):
    import httpx
    import msgpack

    from jobcord.producers import HttpClient
    from jobcord.scheduler.payloads import pack, unpack

    server, key = binary_api
    start_worker(APP)
    a = np.linspace(0, 1, 1000, dtype=np.float64)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/msgpack"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        r = http.post(
            "/v1/apps/binary/jobs/scale/run_remote",
            content=pack({"input": {"a": a, "factor": 3.0}}),
        )
        assert r.status_code == 200, r.text
        assert r.json()["result"]["content_type"] == "application/msgpack"
        out = http.get(f"/v1/requests/{r.json()['request_id']}/output")
        assert out.headers["content-type"] == "application/msgpack"
        assert np.array_equal(unpack(out.content), a * 3.0)
        # Wrong types and malformed msgpack are 422s naming the problem; nothing queued.
        bad = http.post(
            "/v1/apps/binary/jobs/scale/async_run_remote", content=pack({"input": {"a": 1}})
        )
        assert bad.status_code == 422 and "a" in str(bad.json()["detail"][0]["loc"])
        junk = http.post("/v1/apps/binary/jobs/scale/async_run_remote", content=b"\xc1\xc1")
        assert junk.status_code == 422 and "msgpack" in junk.text
        assert msgpack  # (the wire format is plain msgpack: any client can speak it)
        schema = http.get("/openapi.json").json()
        scale_input = schema["components"]["schemas"]["scale_input"]["properties"]["a"]
        assert scale_input["format"] == "binary" and "msgpack" in scale_input["description"]
    # The SDK over HTTP sends binary inputs as msgpack by itself.
    client = HttpClient(server.url, key)
    binary.app.client = client
    try:
        assert np.array_equal(binary.scale.run_remote(a, factor=2.0), a * 2)
        assert binary.checksum.run_remote(b"\x00\xff" * 5)["len"] == 10
    finally:
        binary.app.client = None
        client.close()


def test_large_binary_inputs_go_through_the_result_store(client, rds, start_worker):
    from jobcord.producers import RedisClient
    from jobcord.storage.settings import load_settings

    small_redis = RedisClient(load_settings(inline_input_max_bytes=1000))
    binary.app.client = small_redis
    try:
        start_worker(APP)
        a = np.arange(10_000, dtype=np.int32)
        handle = binary.scale.async_run_remote(a, factor=2.0)
        assert np.array_equal(handle.result(timeout=30), a * 2)
        rec = handle.status()
        assert rec.input_ref.endswith(f"/{handle.request_id}/input.msgpack")
        assert not rds.exists(f"jobcord:req:{handle.request_id}:input")  # not in Redis
        assert len(small_redis.results.get_bytes(rec.input_ref)) > a.nbytes
    finally:
        binary.app.client = None
