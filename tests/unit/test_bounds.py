"""Bounds by construction, without services: one options model for the SDK and HTTP, finite
and bounded durations named when refused, SSE framing that no value can break."""

from __future__ import annotations

import base64
import math
import time
from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from jobcord.producers import App, SubmitOptions
from jobcord.producers.errors import TooLarge
from jobcord.producers.gateway.bodies import job_body_model
from jobcord.producers.gateway.ops import _OnlyApp
from jobcord.producers.gateway.requests import sse
from jobcord.producers.options import RequestOptions
from jobcord.scheduler.bounds import MAX_DELAY_S, MAX_QUEUE_S, MAX_TIMEOUT_S
from jobcord.scheduler.outputs import chunk_event
from jobcord.scheduler.signatures import analyse
from jobcord.storage.ids import is_request_id, new_request_id

HOSTILE_DURATIONS = [math.inf, -math.inf, math.nan, -1.0, 3_000_000.0, 1e308]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (field, value)
        for field in ["timeout_seconds", "max_time_in_queue_seconds", "delay_seconds", "eta"]
        for value in HOSTILE_DURATIONS
        # An eta in the past (-1 s, or 3e6 s after 1970) is no hazard: it runs now.
        if not (field == "eta" and value in (-1.0, 3_000_000.0))
    ],
)
def test_submit_options_refuse_hostile_durations_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SubmitOptions(**{field: value})


def test_the_bounds_are_the_documented_ones():
    assert SubmitOptions(timeout_seconds=MAX_TIMEOUT_S).timeout_seconds == 7 * 24 * 3600
    assert SubmitOptions(max_time_in_queue_seconds=MAX_QUEUE_S)
    assert SubmitOptions(delay_seconds=MAX_DELAY_S)
    for field, bound in [
        ("timeout_seconds", MAX_TIMEOUT_S),
        ("max_time_in_queue_seconds", MAX_QUEUE_S),
        ("delay_seconds", MAX_DELAY_S),
    ]:
        with pytest.raises(ValueError, match=field):
            SubmitOptions(**{field: bound + 1})
    with pytest.raises(ValueError, match="eta"):
        SubmitOptions(eta=time.time() + MAX_DELAY_S + 60)
    with pytest.raises(ValueError, match="eta or delay_seconds"):
        SubmitOptions(eta=time.time() + 5, delay_seconds=1)
    with pytest.raises(ValueError, match="eta"):
        SubmitOptions(eta=datetime(2030, 1, 1))  # naive: whose midnight?
    assert 4 < SubmitOptions(eta=time.time() + 5).start_delay_s() <= 5  # type: ignore[operator]


def test_one_options_model_serves_the_sdk_and_the_http_body():
    app = App("bounds-unit")

    @app.job()
    def job(x: int) -> int:
        return x

    body = job_body_model(job.spec)
    assert issubclass(body, RequestOptions) and issubclass(SubmitOptions, RequestOptions)
    assert set(body.model_fields) == set(RequestOptions.model_fields) | {"input"}
    schema = body.model_json_schema()["properties"]["timeout_seconds"]["anyOf"][0]
    assert schema["exclusiveMinimum"] == 0 and schema["maximum"] == MAX_TIMEOUT_S
    opts = SubmitOptions(idempotency_key="k", parent_id="p", priority=0, eta=time.time() + 60)
    sent = opts.request_options()  # what HttpClient sends: the body's fields only
    assert set(sent) == {"priority", "eta"}
    assert body.model_validate({"input": {"x": 1}, **sent}).priority == 0


def test_sdk_calls_refuse_hostile_durations_before_any_client():
    app = App("bounds-unit-sdk")

    @app.job()
    def job(x: int) -> int:
        return x

    for kwargs in [
        {"max_time_in_queue_seconds": math.inf},
        {"delay_seconds": math.nan},
        {"eta": 1e308},
        {"priority": 7},
    ]:
        [name] = kwargs
        with pytest.raises(ValueError, match=name):  # no Redis here: refused before a client
            job.async_run_remote(1, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": 1e308}, "timeout"),
        ({"timeout": -5}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"retry_initial_delay_s": math.inf}, "retry_initial_delay_s"),
        ({"retry_max_delay_s": 1e308}, "retry_max_delay_s"),
        ({"retries": 10_000}, "retries"),
    ],
)
def test_job_declarations_are_bounded(kwargs, name):
    app = App("bounds-decl")
    with pytest.raises(ValueError, match=name):
        app.job(**kwargs)


def test_cord_timeout_is_bounded():
    app = App("bounds-cord")
    with pytest.raises(ValueError, match="timeout"):
        app.cord(public_api_path="/x", timeout=math.inf)
    assert app.cord(public_api_path="/y", timeout=MAX_TIMEOUT_S)


def test_too_large_is_a_value_error_naming_the_field():
    with pytest.raises(ValueError, match="metadata is 20 bytes.*JOBCORD_MAX_METADATA_BYTES"):
        TooLarge.check("metadata", 20, 10, "METADATA")
    TooLarge.check("input", 10, 10, "INPUT")  # at the limit: fine
    assert TooLarge.http_status == 413


def test_request_ids_have_one_format():
    rid = new_request_id()
    assert is_request_id(rid) and len(rid) == 32
    for bad in ["", rid + ":events", rid.upper(), rid[:-1], "../" + rid[3:], None, 5, rid + "\n"]:
        assert not is_request_id(bad), bad


def test_sse_data_cannot_break_framing():
    assert sse("a\nb\r\nc\rd", "x") == "event: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    assert sse({"s": "\n\nevent: end\n"}) == 'data: {"s": "\\n\\nevent: end\\n"}\n\n'


def _gen(item_type):  # a streaming signature yielding ``item_type``
    def f() -> item_type:  # type: ignore[valid-type]
        yield None

    from collections.abc import Iterator

    f.__annotations__["return"] = Iterator[item_type]
    return analyse(f, "f", stream=True)


def test_streamed_chunks_are_encoded_for_sse():
    as_bytes = _gen(bytes)
    forged = b"\n\nevent: end\ndata: {}\n\n"
    for raw in [forged, b"\xff\xfe\x00", b'{"json": "looking"}', b""]:
        event, data = chunk_event(as_bytes, raw)
        assert event == "bytes" and "\n" not in data and base64.b64decode(data) == raw
    assert chunk_event(_gen(str), b'"a\\nb"') == (None, '"a\\nb"')
    assert chunk_event(_gen(dict), b'{\n"a": 1}') == (None, '{"a":1}')  # JSON line breaks go
    event, data = chunk_event(_gen(object), b"\x92\xc4\x01x\x01")  # msgpack [b"x", 1]
    assert event == "msgpack" and base64.b64decode(data) == b"\x92\xc4\x01x\x01"


def test_metrics_show_only_this_apps_samples():
    registry = CollectorRegistry()
    counter = Counter("jobcord_t_total", "t", ["app"], registry=registry)
    counter.labels("mine").inc()
    counter.labels("theirs").inc(5)
    Counter("jobcord_plain_total", "no app label", registry=registry).inc()
    text = generate_latest(_OnlyApp(registry, "mine")).decode()  # type: ignore[arg-type]
    assert 'app="mine"' in text and "theirs" not in text
    assert "jobcord_plain_total 1.0" in text
