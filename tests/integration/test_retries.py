"""Retries: only failures the job marks retryable, with bounded backoff, each attempt recorded."""

from __future__ import annotations

import pytest

from jobcord.producers import JobFailed
from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs


@pytest.mark.parametrize(
    ("error", "runs", "status"),
    [
        ("connection", 2, Status.SUCCEEDED),  # listed in retry_on
        ("retryable", 2, Status.SUCCEEDED),  # RetryableError: always retryable
        ("value", 1, Status.FAILED),  # not in retry_on: a bug is not retried
        ("permanent", 1, Status.FAILED),  # PermanentError: never retried
    ],
)
def test_only_failures_marked_retryable_are_retried(client, rds, start_worker, error, runs, status):
    start_worker()
    handle = jobs.picky.async_run_remote(f"picky-{error}", error)
    rec = handle.wait(timeout=20)
    assert rec.status is status, rec.error
    assert rds.get(f"jobcord:test:count:picky-{error}") == str(runs)
    assert len(rec.attempts) == runs and rec.attempt == runs


def test_every_attempt_is_recorded(client, start_worker):
    start_worker()
    handle = jobs.flaky.async_run_remote("flaky-history", fail_times=2)
    assert handle.result(timeout=20) == 3
    attempts = handle.status().attempts
    assert [(a.attempt, a.outcome, a.error) for a in attempts] == [
        (1, "RETRY", "RuntimeError"),
        (2, "RETRY", "RuntimeError"),
        (3, "SUCCEEDED", None),
    ]
    assert all(a.worker and a.started_at <= a.ended_at for a in attempts)
    assert attempts[0].reason == "retry after RuntimeError"


def test_retry_waits_within_its_backoff_bounds(client, start_worker):
    # retries=1, initial = max = 3 s: the jittered delay is uniform in [1.5 s, 3 s].
    start_worker()
    handle = jobs.fails_then_waits.async_run_remote("waits")
    with pytest.raises(JobFailed):
        handle.result(timeout=20)
    first, second = handle.status().attempts
    gap = second.started_at - first.ended_at
    assert 1.5 <= gap <= 3.0 + 1.0, gap  # + maintenance interval and scheduling slack


def test_input_validation_errors_are_never_retried(client, rds, start_worker):
    # An input that passed submit but fails the job's model later (e.g. an older deploy).
    from jobcord.producers import SubmitOptions

    sub = client.submit(jobs.flaky.spec, {"key": "k", "fail_times": 0}, SubmitOptions())
    rds.hset(f"jobcord:req:{sub.request_id}", "input", '{"key": "k", "fail_times": "x"}')
    start_worker()
    rec = client.wait(sub.request_id, 20)
    assert rec.status is Status.FAILED and rec.error.type == "InputValidationError"
    assert rec.attempt == 1 and rec.failures == 0


def test_a_value_of_the_wrong_type_fails_the_request_once(client, rds, start_worker):
    start_worker()
    rec = jobs.mistyped.async_run_remote("mistyped", "seven").wait(timeout=20)
    assert rec.status is Status.FAILED and rec.error.type == "OutputValidationError", rec.error
    assert "does not match its return type" in rec.error.message and "integer" in rec.error.message
    assert rds.get("jobcord:test:count:mistyped") == "1"  # the same code returns the same
    assert rec.output is None and rec.result is None  # nothing stored for callers to misread
    # pydantic's lax mode, as for inputs: a value that reads as the type is that type.
    assert jobs.mistyped.async_run_remote("mistyped-ok", "7").result(timeout=20) == 7
