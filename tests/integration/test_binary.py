"""Binary payloads: bytes and numpy arrays travel raw (msgpack) through the queue."""

from __future__ import annotations

import numpy as np

from storage.statuses import Status
from tests.apps import binary

APP = "tests.apps.binary:app"


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

    from storage.errors import IdempotencyConflict

    with pytest.raises(IdempotencyConflict):
        binary.scale.async_run_remote(a + 1, idempotency_key="arr-1")
    start_worker(APP)
    assert first.wait(30).status is Status.SUCCEEDED


def test_wrong_type_is_refused_before_queueing(client):
    import pytest

    from producers import InputValidationError

    with pytest.raises(InputValidationError, match="a"):
        binary.scale.async_run_remote([1, 2, 3])
