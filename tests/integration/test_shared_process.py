"""concurrency=N: one job process runs N requests of a job at once, each with its own lease,
timeout and outcome; a stop that kills the process hands the others back uncounted."""

from __future__ import annotations

import time

from jobcord.storage.statuses import Status
from tests.apps import shared
from tests.conftest import wait_for

APP = "tests.apps.shared:app"


def test_a_plain_job_runs_four_at_once_in_one_process(client, rds, start_worker):
    start_worker(APP)  # one child
    started = time.monotonic()
    handles = [shared.nap.async_run_remote("threads", 0.6) for _ in range(8)]
    assert [h.result(timeout=20) for h in handles] == [1] * 8
    took = time.monotonic() - started
    assert took < 2.4, took  # two rounds of four, not eight one after another (4.8 s)
    assert rds.get("jobcord:test:most:threads") == "4"  # never more than declared
    assert rds.scard("jobcord:test:pids:threads") == 1
    records = [h.status() for h in handles]
    assert {r.status for r in records} == {Status.SUCCEEDED}
    assert all(r.attempts[-1].worker for r in records)


def test_an_async_job_shares_one_event_loop(client, rds, start_worker):
    start_worker(APP)
    started = time.monotonic()
    handles = [shared.anap.async_run_remote("loop", 0.6) for _ in range(8)]
    assert [h.result(timeout=20) for h in handles] == ["slept"] * 8
    assert time.monotonic() - started < 2.4
    assert rds.get("jobcord:test:most:loop") == "4"


def test_a_timeout_ends_its_own_request_and_hands_the_others_back(client, rds, start_worker):
    start_worker(APP)
    stuck = shared.maybe_stuck.async_run_remote("stop", 30)  # its timeout is 2 s
    wait_for(lambda: rds.llen("jobcord:test:started:stop") == 1, 20, "the stuck one to start")
    time.sleep(0.3)
    # Still running when the first one's timeout kills their process (after its grace of
    # 0.5 s, in which a sibling that ends may still record its outcome).
    others = [shared.maybe_stuck.async_run_remote("stop", 5) for _ in range(2)]
    wait_for(lambda: rds.llen("jobcord:test:started:stop") == 3, 20, "its siblings to start")
    assert stuck.wait(20).status is Status.TIMED_OUT
    for h in others:  # killed with the process: run again, not counted against them
        assert h.result(timeout=20) == 2
        rec = h.status()
        assert (rec.failures, rec.worker_losses) == (0, 0)
        assert rec.attempts[0].reason == "preempted"


def test_a_cancel_stops_one_shared_request(client, rds, start_worker):
    start_worker(APP)
    victim = shared.nap.async_run_remote("cancel", 30)
    wait_for(lambda: rds.llen("jobcord:test:started:cancel") == 1, 20, "it to start")
    assert victim.cancel() is Status.CANCELED  # its process stopped within the wait
    assert victim.wait(10).status is Status.CANCELED
    assert shared.nap.run_remote("cancel-after", 0.01) == 1  # a new process serves on


def test_other_jobs_are_not_shut_out_by_a_stream_of_shared_ones(client, rds, start_worker):
    start_worker(APP)
    stream = [shared.nap.async_run_remote("busy", 0.3) for _ in range(40)]  # ~3 s of work
    time.sleep(0.5)
    alone = shared.solo.async_run_remote("fair")
    assert alone.result(timeout=2.5) == "alone"  # within a time slice, not after the stream
    assert any(not h.status().status.is_terminal for h in stream)
    for h in stream:
        h.result(timeout=30)
