"""Hard timeouts, cancels, and what happens when processes die."""

from __future__ import annotations

import os
import signal
import time

from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs
from tests.conftest import wait_for


def _in_progress(handle):
    return handle.status().status is Status.IN_PROGRESS


def test_timeout_kills_job_stuck_in_c_and_consumer_goes_on(client, rds, start_worker):
    worker = start_worker()
    handle = jobs.stuck_in_c.async_run_remote("stuck", 60)
    rec = handle.wait(20)
    assert rec.status is Status.TIMED_OUT, worker.log
    assert rec.error.type == "Timeout" and "1.0 s" in rec.error.message
    assert rec.finished_at - rec.started_at < 3.0  # recorded at the deadline, not after a kill
    assert rds.get("jobcord:test:count:stuck") == "1"  # a timeout is never retried
    # The consumer replaced the killed process (startup ran again) and serves the next one.
    assert jobs.echo.run_remote(1)["x"] == 1
    assert rds.get("jobcord:test:startups") == "2"


def test_cancel_queued_request_never_runs(client, rds, start_worker):
    handle = jobs.count.async_run_remote("never")
    assert handle.cancel() is Status.CANCELED
    start_worker()
    assert jobs.echo.run_remote(2)["x"] == 2  # the canceled message was consumed first
    assert handle.status().status is Status.CANCELED
    assert rds.get("jobcord:test:count:never") is None


def test_cancel_running_request_stops_it(client, rds, start_worker):
    start_worker()
    handle = jobs.report_pid.async_run_remote("cancel-me", 60)
    wait_for(lambda: rds.get("jobcord:test:pid:cancel-me:1"), 20, "job to start")
    pid = int(rds.get("jobcord:test:pid:cancel-me:1"))
    asked = time.monotonic()
    assert handle.cancel(wait=0) is Status.IN_PROGRESS  # running: its worker is told
    rec = handle.wait(10)
    assert rec.status is Status.CANCELED
    assert time.monotonic() - asked < 2.0
    wait_for(lambda: not _alive(pid), 5, "the job's process to be killed")
    assert jobs.echo.run_remote(3)["x"] == 3
    assert rds.get("jobcord:test:count:cancel-me") == "1"


def test_cancel_during_retry_wait_is_final(client, rds, start_worker):
    start_worker()
    handle = jobs.fails_then_waits.async_run_remote("retry-cancel")
    wait_for(lambda: handle.status().retry_at, 20, "the retry to be scheduled")
    assert handle.cancel() is Status.CANCELED
    time.sleep(3.5)  # past the retry's eta
    assert handle.status().status is Status.CANCELED
    assert rds.get("jobcord:test:count:retry-cancel") == "1"


def test_killed_job_process_is_retried_at_once(client, rds, start_worker):
    worker = start_worker()
    handle = jobs.report_pid.async_run_remote("child-kill", 1.0)
    wait_for(lambda: rds.get("jobcord:test:pid:child-kill:1"), 20, "job to start")
    os.kill(int(rds.get("jobcord:test:pid:child-kill:1")), signal.SIGKILL)
    assert handle.result(timeout=20) == 2, worker.log
    rec = handle.status()
    assert (rec.attempt, rec.worker_losses, rec.failures) == (2, 1, 0)


def test_job_that_keeps_killing_its_process_ends_failed(client, rds, start_worker):
    start_worker()
    handle = jobs.crash.async_run_remote("poison")
    rec = handle.wait(30)
    assert rec.status is Status.FAILED
    assert rec.error.type == "WorkerLost"
    assert rds.get("jobcord:test:count:poison") == "3"  # JOBCORD_MAX_WORKER_LOSSES default
    assert [a.error for a in rec.attempts] == ["WorkerLost"] * 3 and rec.worker_losses == 3
    # A poison request is in the dead-letter view like any other failure.
    assert [r.request_id for r in client.store.failed("lifecycle")] == [handle.request_id]


def test_sigkilled_consumer_request_is_redelivered_within_seconds(client, rds, start_worker):
    # Both consumers are up before the request exists (a worker's start can outlast a short
    # job on a loaded machine); the one that took it is killed.
    workers = [start_worker(), start_worker()]
    handle = jobs.report_pid.async_run_remote("consumer-kill", 5.0)
    wait_for(lambda: rds.get("jobcord:test:pid:consumer-kill:1"), 20, "job to start")
    child_pid = int(rds.get("jobcord:test:pid:consumer-kill:1"))
    holder_pid = int(handle.status().worker.split(":")[1])
    [first] = [w for w in workers if w.proc.pid == holder_pid]
    [second] = [w for w in workers if w is not first]
    killed = time.monotonic()
    first.kill()  # SIGKILL the consumer: no cleanup of any kind runs
    wait_for(lambda: not _alive(child_pid), 5, "its job process to die with it")
    wait_for(lambda: rds.get("jobcord:test:pid:consumer-kill:2"), 15, "redelivery")
    redelivered_after = time.monotonic() - killed
    assert redelivered_after < 4.0  # lease 1 s here; dramatiq alone would wait 60 s or more
    assert handle.result(timeout=20) == 2, second.log
    rec = handle.status()
    assert (rec.attempt, rec.worker_losses) == (2, 1)
    assert rds.get("jobcord:test:count:consumer-kill") == "2"


def test_gil_holding_job_is_never_run_twice(client, rds, start_worker):
    start_worker()
    start_worker()
    handle = jobs.hold_gil.async_run_remote("gil", 3)  # 3 x the lease TTL
    assert handle.result(timeout=20) == 1
    time.sleep(1.5)
    assert rds.get("jobcord:test:count:gil") == "1"
    assert handle.status().worker_losses == 0


def test_graceful_stop_hands_running_work_back(client, rds, start_worker):
    first = start_worker()
    handle = jobs.report_pid.async_run_remote("drain", 30)
    wait_for(lambda: rds.get("jobcord:test:pid:drain:1"), 20, "job to start")
    first.stop()  # SIGTERM: drain 2 s, then hand the request back
    rec = handle.status()
    assert rec.status is Status.QUEUED and rec.attempt == 2
    assert (rec.failures, rec.worker_losses) == (0, 0)
    assert handle.cancel() is Status.CANCELED


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped while we read (ESRCH)
        return False


def test_a_zombie_whose_lease_was_taken_is_killed_and_writes_nothing(client, rds, start_worker):
    worker = start_worker()
    handle = jobs.report_pid.async_run_remote("zombie", 30)
    wait_for(lambda: rds.get("jobcord:test:pid:zombie:1"), 20, "job to start")
    pid = int(rds.get("jobcord:test:pid:zombie:1"))
    # Another attempt owns the request now (as after a recovery the zombie slept through),
    # and keeps its lease.
    rds.hset(f"jobcord:req:{handle.request_id}", "lease", "someone-elses")
    rds.zadd("jobcord:running", {handle.request_id: time.time() + 600})
    wait_for(lambda: not _alive(pid), 10, "the zombie's process to be killed")
    assert "lease lost; attempt abandoned" in worker.log
    rec = handle.status()
    assert rec.status is Status.IN_PROGRESS and rec.attempt == 1  # nothing written by it
    assert rds.hget(f"jobcord:req:{handle.request_id}", "lease") == "someone-elses"
    assert jobs.echo.run_remote(4)["x"] == 4  # a new child serves the next request


def test_children_of_a_frozen_parent_take_no_new_work(client, rds, start_worker):
    frozen = start_worker()
    os.kill(frozen.proc.pid, signal.SIGSTOP)  # the parent only: its child keeps running
    try:
        time.sleep(1.0)  # past half a lease: the child notices nobody would renew its leases
        handles = [jobs.count.async_run_remote(f"frozen-{i}") for i in range(4)]
        time.sleep(1.0)
        assert {h.status().status for h in handles} == {Status.QUEUED}
        start_worker()  # a live consumer takes them all, at their first attempt
        for h in handles:
            assert h.result(timeout=20) == 1
        assert {h.status().attempt for h in handles} == {1}
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
