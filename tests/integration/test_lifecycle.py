"""The request lifecycle end to end: submit -> queue -> consumer -> result -> status."""

from __future__ import annotations

import threading
import time

import pytest

from jobcord.producers import JobFailed, ResultTimeout
from jobcord.scheduler.errors import InputValidationError
from jobcord.storage.errors import IdempotencyConflict
from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs
from tests.conftest import wait_for


def test_result_status_times_and_events(client, start_worker):
    start_worker()
    handle = jobs.echo.async_run_remote(7, tag="hi")
    out = handle.result(timeout=20)
    assert out["x"] == 7 and out["tag"] == "hi"
    rec = handle.status()
    assert rec.status is Status.SUCCEEDED
    assert rec.attempt == 1
    assert rec.created_at <= rec.started_at <= rec.finished_at
    assert rec.queue == "jobcord.lifecycle.cpu"
    statuses = [e.status for e in client.store.events(handle.request_id)]
    assert statuses == [Status.QUEUED, Status.IN_PROGRESS, Status.SUCCEEDED]


def test_typed_input_and_output(client, start_worker):
    start_worker()
    out = jobs.typed.run_remote({"x": 2, "y": 3}, scale=10)
    assert isinstance(out, jobs.Point)
    assert (out.x, out.y) == (20, 30)


def test_invalid_input_is_refused_before_queueing(client, rds):
    with pytest.raises(InputValidationError) as info:
        jobs.typed.async_run_remote({"x": "not a number", "y": 1})
    assert "p.x" in str(info.value)
    with pytest.raises(InputValidationError, match="x: Field required"):
        jobs.echo.async_run_remote(tag="missing x")
    with pytest.raises(InputValidationError, match="unexpected keyword|got an unexpected"):
        jobs.echo.async_run_remote(1, nonsense=True)
    assert list(rds.scan_iter("jobcord:req:*")) == []
    assert rds.llen("jobcord.dq:jobcord.lifecycle.cpu") == 0


def test_startup_runs_once_per_process_and_stays_warm(client, rds, start_worker):
    worker = start_worker()
    outs = [jobs.echo.run_remote(i) for i in range(5)]
    assert {o["pid"] for o in outs} == {outs[0]["startup_pid"]}
    assert rds.get("jobcord:test:startups") == "1", worker.log


def test_concurrency_runs_requests_in_parallel(client, start_worker):
    start_worker("tests.apps.lifecycle:app", "--concurrency", "3")
    started = time.monotonic()
    handles = [jobs.slow.async_run_remote(1.0) for _ in range(3)]
    assert [h.result(timeout=20) for h in handles] == [1.0, 1.0, 1.0]
    assert time.monotonic() - started < 2.5


def test_progress_is_visible(client, start_worker):
    start_worker()
    handle = jobs.progress.async_run_remote(4)
    assert handle.result(timeout=20) == 4
    events = client.store.events(handle.request_id)
    fractions = [float(e.fields["progress"]) for e in events if "progress" in e.fields]
    assert fractions == [0.25, 0.5, 0.75, 1.0]
    assert handle.status().progress_message == "step 4"


def test_result_waits_on_events_and_times_out(client, start_worker):
    start_worker()
    handle = jobs.slow.async_run_remote(3.0)
    started = time.monotonic()
    with pytest.raises(ResultTimeout):
        handle.result(timeout=0.5)
    assert 0.45 < time.monotonic() - started < 1.5
    assert handle.result(timeout=20) == 3.0


def test_idempotency_same_input_same_request(client, rds, start_worker):
    first = jobs.count.async_run_remote("idem", idempotency_key="k-1")
    second = jobs.count.async_run_remote("idem", idempotency_key="k-1")
    assert second.request_id == first.request_id
    assert first.created and not second.created
    with pytest.raises(IdempotencyConflict, match="different input"):
        jobs.count.async_run_remote("other", idempotency_key="k-1")
    start_worker()
    assert first.result(timeout=20) == 1
    assert rds.get("jobcord:test:count:idem") == "1"


def test_idempotency_race_yields_one_request_and_one_execution(client, rds, start_worker):
    ids: list[str] = []
    barrier = threading.Barrier(16)

    def submit() -> None:
        barrier.wait()
        ids.append(jobs.count.async_run_remote("race", idempotency_key="race-key").request_id)

    threads = [threading.Thread(target=submit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert len(list(rds.scan_iter("jobcord:req:*[^s]"))) == 1
    start_worker()
    assert client.wait(ids[0], 20).status is Status.SUCCEEDED
    time.sleep(0.3)
    assert rds.get("jobcord:test:count:race") == "1"


def test_idempotency_key_expires(client, rds, monkeypatch):
    jobs.count.async_run_remote("exp", idempotency_key="short")
    ttl = rds.ttl("jobcord:idem:lifecycle:short")
    assert 24 * 3600 - 5 < ttl <= 24 * 3600


def test_failure_is_reported_with_remote_traceback(client, start_worker):
    start_worker()
    with pytest.raises(JobFailed) as info:
        jobs.always_fails.run_remote("the disk is full")
    text = str(info.value)
    assert "FAILED" in text and "ValueError: bad thing: the disk is full" in text
    assert "remote traceback" in text and "always_fails" in text
    rec = info.value.record
    assert rec.error.type == "ValueError" and rec.attempt == 1


def test_retries_with_backoff_then_success(client, rds, start_worker):
    start_worker()
    handle = jobs.flaky.async_run_remote("flaky", fail_times=2)
    assert handle.result(timeout=20) == 3
    rec = handle.status()
    assert (rec.attempt, rec.failures) == (3, 2)
    assert rds.get("jobcord:test:count:flaky") == "3"
    reasons = [e.fields.get("reason") for e in client.store.events(handle.request_id)]
    assert reasons.count("retry after RuntimeError") == 2


def test_retries_exhausted_end_failed(client, rds, start_worker):
    start_worker()
    handle = jobs.flaky.async_run_remote("flaky-out", fail_times=5)
    with pytest.raises(JobFailed, match="attempt 3 fails on purpose"):
        handle.result(timeout=20)
    assert rds.get("jobcord:test:count:flaky-out") == "3"


def test_unknown_to_consumer_is_failed_not_retried(client, rds, start_worker):
    # A request of an older producer (no job version: it could be anyone's) whose job this
    # consumer does not know fails clearly. (One with a version waits for a consumer that
    # runs it: tests/integration/test_rolling_deploy.py.)
    sub = client.submit(jobs.count.spec, {"key": "x", "sleep_s": 0.0}, _opts())
    rds.hset(f"jobcord:req:{sub.request_id}", "job", "vanished")
    rds.hdel(f"jobcord:req:{sub.request_id}", "job_version")
    start_worker()
    rec = client.wait(sub.request_id, 20)
    assert rec.status is Status.FAILED and rec.error.type == "UnknownJob"


def _opts():
    from jobcord.producers import SubmitOptions

    return SubmitOptions()


def test_queued_request_expires_and_never_runs(client, rds, start_worker):
    handle = jobs.count.async_run_remote("expire", max_time_in_queue_seconds=0.3)
    time.sleep(0.6)
    start_worker()
    rec = handle.wait(20)
    assert rec.status is Status.EXPIRED
    assert rds.get("jobcord:test:count:expire") is None


def test_bad_options_are_refused(client):
    with pytest.raises(ValueError, match="priority"):
        jobs.count.async_run_remote("x", priority=7)
    with pytest.raises(ValueError, match="max_time_in_queue_seconds"):
        jobs.count.async_run_remote("x", max_time_in_queue_seconds=-1)


def test_status_of_unknown_request(client):
    from jobcord.storage.errors import RequestNotFound

    with pytest.raises(RequestNotFound):
        jobs.count.handle("no-such-id").status()


def test_records_of_finished_requests_expire(client, rds, start_worker):
    start_worker()
    handle = jobs.count.async_run_remote("ttl")
    handle.result(timeout=20)
    assert rds.ttl(f"jobcord:req:{handle.request_id}") > 6 * 24 * 3600
    wait_for(lambda: rds.ttl(f"jobcord:req:{handle.request_id}:events") > 0, 2, "events ttl")


def test_waiting_longer_than_redis_default_socket_timeout(client, start_worker):
    # redis-py times reads out after 5 s by default; a blocking wait must outlast that.
    start_worker()
    handle = jobs.slow.async_run_remote(6.5)
    assert handle.result(timeout=30) == 6.5


def test_expiry_is_visible_without_any_consumer(client, rds):
    # No consumer at all: the scheduler's maintenance pass expires it on time.
    from jobcord.scheduler.maintenance import MaintenanceLoop

    handle = jobs.count.async_run_remote("nobody", max_time_in_queue_seconds=0.2)
    loop = MaintenanceLoop(client.store, 0.05)
    loop.start()
    try:
        rec = handle.wait(5)
    finally:
        loop.stop()
    assert rec.status is Status.EXPIRED


def test_delayed_request_starts_after_its_delay(client, rds, start_worker):
    start_worker()
    handle = jobs.count.async_run_remote("later", delay_seconds=1.5)
    time.sleep(0.8)
    rec = handle.status()
    assert rec.status is Status.QUEUED and rec.retry_at is not None
    assert rds.get("jobcord:test:count:later") is None
    done = handle.wait(20)
    assert done.status is Status.SUCCEEDED
    assert done.started_at - done.created_at >= 1.4


def test_delay_counts_before_the_queue_deadline(client, start_worker):
    start_worker()
    # Runnable after 1 s, then 5 s to start: it must not expire during its own delay.
    handle = jobs.count.async_run_remote("late-ok", delay_seconds=1.0, max_time_in_queue_seconds=5)
    assert handle.wait(20).status is Status.SUCCEEDED


def test_bad_delay_is_refused(client):
    with pytest.raises(ValueError, match="delay_seconds"):
        jobs.count.async_run_remote("x", delay_seconds=-1)


def test_a_queued_request_stores_no_event_stream_yet_reads_queued_first(client, rds):
    """The first QUEUED comes from the record: a one-entry stream would cost ~4.5 KB each."""
    from jobcord.storage.keys import events_key

    handle = jobs.echo.async_run_remote(1)
    assert not rds.exists(events_key(handle.request_id))
    [queued] = client.store.events(handle.request_id)
    rec = handle.status()
    assert (queued.status, queued.attempt, queued.at) == (Status.QUEUED, 1, rec.created_at)
    # A request stored by an earlier version has that event in its stream: never twice.
    rds.xadd(events_key(handle.request_id), {"status": "QUEUED", "at": "1", "attempt": "1"})
    assert [e.status for e in client.store.events(handle.request_id)] == [Status.QUEUED]
    assert client.store.cancel(handle.request_id) is Status.CANCELED
    assert [e.status for e in client.store.events(handle.request_id)] == [
        Status.QUEUED,
        Status.CANCELED,
    ]


def test_finished_requests_leave_no_message_lease_or_wake_up_behind(client, start_worker, rds):
    """A claim takes the message off its queue; the finish removes the lease: once every
    request ended, the queue, its wake-ups and the running set are empty."""
    start_worker()
    handles = [jobs.echo.async_run_remote(i) for i in range(5)]
    handles.append(jobs.always_fails.async_run_remote("no"))
    for h in handles:
        h.wait(timeout=20)

    def clean() -> bool:
        queues = [k for k in rds.scan_iter("jobcord.dq:jobcord.lifecycle.cpu*") if rds.llen(k)]
        return not queues and not rds.zcard("jobcord:running")

    wait_for(clean, 10, "no message or lease left")
    assert rds.llen("jobcord:wake:jobcord.lifecycle.cpu") <= 1  # at most one, for an idle wait


def test_many_threads_wait_on_results_at_once(client, start_worker):
    """Each waiting thread holds a Redis connection: more than redis-py 8's default pool of
    100 must still work (JOBCORD_REDIS_MAX_CONNECTIONS, 1000 by default)."""
    from concurrent.futures import ThreadPoolExecutor

    handles = [jobs.echo.async_run_remote(i) for i in range(150)]
    with ThreadPoolExecutor(150) as pool:
        waits = [pool.submit(h.result, timeout=60) for h in handles]
        time.sleep(0.5)  # every thread is blocked on its result before any can arrive
        start_worker()
        assert [w.result()["x"] for w in waits] == list(range(150))


def test_result_with_timeout_zero_reads_a_finished_request_once(client, start_worker):
    from jobcord.producers import ResultTimeout

    start_worker()
    queued = jobs.count.async_run_remote("zero-wait", sleep_s=5.0)
    with pytest.raises(ResultTimeout):
        queued.result(timeout=0)  # not finished: no wait at all
    done = jobs.echo.async_run_remote(4)
    done.wait(20)
    assert done.result(timeout=0)["x"] == 4  # finished: timeout 0 still looks
