from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from jobcord.scheduler import (
    InputValidationError,
    JobContext,
    JobDefinitionError,
    OutputValidationError,
    analyse,
    input_hash,
)
from jobcord.scheduler.outputs import BYTES_TYPE, JSON_TYPE, decode_output, encode_output
from jobcord.storage.records import RequestRecord


class Box(BaseModel):
    w: int
    h: int


def area(ctx: JobContext, box: Box, scale: float = 1.0) -> float:
    return box.w * box.h * scale


def test_context_is_not_input_and_may_come_first():
    sig = analyse(area, "area")
    assert sig.context_param == "ctx"
    assert sig.parameters == ("box", "scale")
    assert sig.bind(({"w": 2, "h": 3},), {}) == {"box": {"w": 2, "h": 3}, "scale": 1.0}


def test_errors_name_the_field():
    sig = analyse(area, "area")
    with pytest.raises(InputValidationError, match=r"box\.w: Input should be a valid integer"):
        sig.bind(({"w": "x", "h": 3},), {})
    with pytest.raises(InputValidationError, match="box: Field required"):
        sig.bind((), {})
    with pytest.raises(InputValidationError, match="ctx: the JobContext is injected"):
        sig.bind(({"w": 1, "h": 1},), {"ctx": 1})
    with pytest.raises(InputValidationError, match="input: must be a JSON object"):
        sig.validate([1, 2])
    with pytest.raises(InputValidationError, match="extra: Extra inputs are not permitted"):
        sig.validate({"box": {"w": 1, "h": 1}, "extra": 1})


def test_typed_kwargs_rebuild_models():
    sig = analyse(area, "area")
    kwargs = sig.typed_kwargs({"box": {"w": 2, "h": 3}})
    assert isinstance(kwargs["box"], Box) and kwargs["scale"] == 1.0


def test_var_args_are_refused():
    def bad(*values: int) -> int:
        return sum(values)

    with pytest.raises(JobDefinitionError, match=r"\*args"):
        analyse(bad, "bad")


def test_input_hash_is_canonical_and_job_specific():
    assert input_hash("a", {"x": 1, "y": 2}) == input_hash("a", {"y": 2, "x": 1})
    assert input_hash("a", {"x": 1}) != input_hash("b", {"x": 1})


def _record(**kw):
    base = dict(request_id="r", app="a", job="j", queue="q", status="SUCCEEDED", created_at=1.0)
    return RequestRecord.model_validate({**base, **kw})


def test_outputs_round_trip_inline_and_stored():
    def make() -> Box:
        return Box(w=1, h=2)

    sig = analyse(make, "make")
    enc = encode_output(sig, Box(w=1, h=2))
    assert enc.content_type == JSON_TYPE and json.loads(enc.data) == {"w": 1, "h": 2}
    inline = _record(output={"w": 1, "h": 2})
    assert decode_output(sig, inline, lambda r: b"") == Box(w=1, h=2)
    stored = _record(
        result={"name": "output.json", "key": "k", "size": 3, "content_type": JSON_TYPE}
    )
    assert decode_output(sig, stored, lambda r: enc.data) == Box(w=1, h=2)

    def image() -> bytes:
        return b""

    raw = encode_output(analyse(image, "image"), b"\x00\x01")
    assert raw.content_type == BYTES_TYPE
    assert encode_output(analyse(image, "image"), memoryview(b"\x02")).data == b"\x02"
    blob = _record(result={"name": "output", "key": "k", "size": 2, "content_type": BYTES_TYPE})
    assert decode_output(sig, blob, lambda r: b"\x00\x01") == b"\x00\x01"


def test_a_value_of_another_type_is_refused_not_stored():
    def make() -> Box:
        return Box(w=1, h=2)

    sig = analyse(make, "make")
    with pytest.raises(OutputValidationError, match="'make' returned a value that does not"):
        encode_output(sig, b"\x00\x01")
    with pytest.raises(OutputValidationError, match="return type: h: Field required"):
        encode_output(sig, {"w": 1})
    assert json.loads(encode_output(sig, {"w": 1, "h": "2"}).data) == {"w": 1, "h": 2}


def test_a_batched_job_is_called_with_one_item_and_validated_against_its_element_type():
    from jobcord.producers import App, run_local

    app = App("batch-sig")

    @app.job(max_batch_size=8, batch_wait_ms=5)
    def scale(xs: list[float], factor: list[int]) -> list[float]:
        pairs = zip(xs, factor, strict=True)
        return [x * f if x >= 0 else ValueError("negative") for x, f in pairs]

    sig = scale.spec.signature
    assert sig.bind((1.5, 2), {}) == {"xs": 1.5, "factor": 2}
    assert sig.output_type is float and scale.spec.queue.endswith(".scale")
    with pytest.raises(InputValidationError, match="factor"):
        sig.bind((1.5, "many"), {})
    with run_local():  # the same function, with a batch of one
        assert scale.run_remote(1.5, 2) == 3.0
        with pytest.raises(ValueError, match="negative"):
            scale.run_remote(-1.0, 2)


@pytest.mark.parametrize(
    ("declare", "error"),
    [
        (lambda app: app.job(max_batch_size=4)(lambda xs: xs), "list"),
        (lambda app: app.job(max_batch_size=4, concurrency=2)(_listy), "concurrency"),
        (lambda app: app.job(max_batch_size=4, upload=True)(_listy), "upload"),
        (lambda app: app.job(max_batch_size=2000)(_listy), "max_batch_size"),
        (lambda app: app.job(max_batch_size=4, batch_wait_ms=-1)(_listy), "batch_wait_ms"),
        (lambda app: app.job(max_batch_size=4)(_defaulted), "default"),
    ],
)
def test_a_batching_declaration_that_cannot_work_is_refused_at_once(declare, error):
    from jobcord.producers import App

    with pytest.raises((ValueError, JobDefinitionError), match=error):
        declare(App("batch-bad"))


def _listy(xs: list[int]) -> list[int]:
    return xs


def _defaulted(xs: list[int] = []) -> list[int]:  # noqa: B006 - the point of the test
    return xs
