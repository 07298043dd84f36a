"""The async calls without Redis: run_local() and other non-Redis clients take their sync
path on a thread; the wait's ``timeout`` keyword and a job input of that name."""

from __future__ import annotations

import asyncio

import pytest

from jobcord.producers import App, InputValidationError, run_local
from jobcord.producers.async_client import async_twin
from jobcord.storage.statuses import Status
from tests.apps import async_calls, chains

app = App("async-unit")


@app.job()
def double(x: int) -> int:
    return 2 * x


def test_run_local_serves_the_async_calls():
    async def calls() -> None:
        assert await double.arun_remote(4, timeout=5) == 8
        handle = await double.asubmit(x=5)
        assert await handle.aresult(timeout=0) == 10
        assert (await handle.astatus()).status is Status.SUCCEEDED
        assert await handle.acancel() is Status.SUCCEEDED
        assert await chains.afan_out.arun_remote(3) == 6  # an async parent, its children
        with pytest.raises(InputValidationError):
            await double.asubmit("not a number")

    with run_local() as local:
        assert async_twin(local) is None  # not a RedisClient: its sync calls, on a thread
        asyncio.run(calls())


def test_timeout_is_the_wait_unless_the_job_has_an_input_of_that_name():
    with run_local():
        assert async_calls.named_timeout.run_remote(timeout=2.5) == 2.5
        assert async_calls.named_timeout.run_remote(timeout=2.5, result_timeout_s=5) == 2.5
        assert double.run_remote(3, timeout=5) == 6
        assert double.run_remote(3, result_timeout_s=5) == 6
        with pytest.raises(TypeError, match="not both"):
            double.run_remote(3, timeout=5, result_timeout_s=5)
        for bad in (-1, float("nan"), float("inf"), "5", True):
            with pytest.raises(ValueError, match="finite number of seconds"):
                double.run_remote(3, timeout=bad)
