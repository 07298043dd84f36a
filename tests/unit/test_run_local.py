"""run_local(): jobs run in this process, no Redis, same validation, fakes for any step."""

from __future__ import annotations

import pytest

from jobcord.producers import App, InputValidationError, JobContext, JobFailed, run_local
from jobcord.storage.statuses import Status
from tests.apps import chains

app = App("local-test")
calls: list[int] = []


@app.on_startup()
def model() -> dict[str, int]:
    return {"weight": 3}


@app.job(retries=2, retry_initial_delay_s=0.01)
def flaky(ctx: JobContext, fail_times: int) -> int:
    calls.append(ctx.attempt)
    if ctx.attempt <= fail_times:
        raise ConnectionError("transient")
    return ctx.state["model"]["weight"] * ctx.attempt


@app.job()
def blob(n: int) -> bytes:
    return bytes(range(n))


def test_a_pipeline_runs_in_process_with_its_children():
    with run_local():
        handle = chains.fan_out.async_run_remote(5)
        assert handle.result() == sum(2 * i for i in range(5))
        tree = handle.status().children
        assert [(c["job"], c["status"]) for c in tree] == [("leaf", "SUCCEEDED")] * 5
        assert chains.afan_out.run_remote(4) == 12


def test_a_fake_replaces_the_gpu_step():
    with run_local(fakes={chains.leaf: lambda x: 100 + x}):
        assert chains.fan_out.run_remote(3) == 303
    with run_local(fakes={"leaf": lambda x: -x}):
        assert chains.fan_out.run_remote(3) == -3


def test_same_validation_errors_and_retries_as_the_queue():
    with run_local():
        with pytest.raises(InputValidationError, match="n"):
            chains.fan_out.run_remote("many")
        calls.clear()
        handle = flaky.async_run_remote(fail_times=2)
        assert handle.result() == 9 and calls == [1, 2, 3]
        assert handle.status().failures == 2
        with pytest.raises(JobFailed, match="transient"):
            flaky.run_remote(fail_times=5)
        assert blob.run_remote(4) == b"\x00\x01\x02\x03"


def test_errors_keep_their_class_through_levels():
    with run_local():
        with pytest.raises(chains.StepFailed, match="root cause: oops"):
            chains.top.run_remote("oops")
        handle = chains.top.async_run_remote("again")
        assert handle.status().status is Status.FAILED
        assert handle.status().children[0]["children"][0]["error"] == "StepFailed"


def test_nothing_leaks_out_of_the_block():
    with run_local() as local:
        chains.leaf.run_remote(1)
    assert local.records  # it ran there, and the block is closed now
    from jobcord.producers.local import local_client

    assert local_client() is None


def test_binary_payloads_locally():
    import numpy as np

    from examples import arrays as binary

    with run_local():
        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        assert np.array_equal(binary.scale.run_remote(a), a * 2)
        assert binary.mixed.run_remote(b"ab", a)["blob"] == b"ba"
