"""Failed start-ups of job processes (issue 25.4), without services: the back-off, the
reason health gives, and how readers of health and the registration take it."""

from __future__ import annotations

import signal

from jobcord.consumers.startups import (
    BACKOFF_S,
    StartFailures,
    children_problem,
    exit_reason,
    startup_failed_reason,
)
from jobcord.scheduler.health import assess
from jobcord.storage.registry import queue_unserved_reason


def test_the_back_off_doubles_from_one_second_to_thirty_and_resets_on_ready():
    failures = StartFailures()
    assert failures.backoff_s() == 0.0
    pauses = [
        failures.failed("child exited with code 3 during start-up", 100.0 + i) for i in range(8)
    ]
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert BACKOFF_S == (1.0, 30.0)
    assert failures.count == 8 and failures.first_at == 100.0
    failures.cleared()
    assert (failures.count, failures.first_at, failures.last) == (0, None, None)
    assert failures.failed("again", 500.0) == 1.0


def test_the_reason_names_the_failure_how_often_and_over_how_long():
    once = StartFailures()
    once.failed("child exited with code 3 during start-up", 10.0)
    assert once.describe(11.0) == "child exited with code 3 during start-up"
    loop = StartFailures()
    for at in (10.0, 11.0, 13.0, 17.0, 25.0):
        loop.failed("child exited with code 3 during start-up", at)
    assert loop.describe(70.0) == "child exited with code 3 during start-up (5 times in 60 s)"
    assert children_problem([], 2, 70.0) is None
    assert children_problem([once, loop], 2, 70.0) == (
        "2 of 2 job processes cannot start: child exited with code 3 during start-up "
        "(5 times in 60 s)"
    )
    assert children_problem([once], 4, 70.0).startswith("1 of 4 job processes cannot start")


def test_exit_codes_and_tracebacks_read_as_one_line():
    assert exit_reason(3) == "child exited with code 3 during start-up"
    assert exit_reason(-signal.SIGKILL) == "child killed by SIGKILL during start-up"
    assert exit_reason(-200) == "child killed by signal 200 during start-up"
    assert exit_reason(None) == "child vanished during start-up"
    tb = (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in boot\n'
        "    raise RuntimeError('x')\n"
        "RuntimeError: the model file is missing\n"
    )
    assert startup_failed_reason(tb) == "start-up failed: RuntimeError: the model file is missing"
    assert startup_failed_reason("could not join the job process's cgroup: denied") == (
        "start-up failed: could not join the job process's cgroup: denied"
    )


def _consumer_report(problems: list[dict[str, str]]) -> dict:
    now = 1000.0
    loop = {
        "name": "supervisor",
        "interval_s": 1.0,
        "started_at": now - 5,
        "last_pass_at": now,
        "consecutive_errors": 0,
        "errors_total": 0,
        "last_error": None,
        "last_error_at": None,
    }
    return {
        "process": "consumer:h:1",
        "role": "consumer",
        "published_at": now,
        "seen_at": now,
        "publish_interval_s": 1.0,
        "loops": [loop],
        "problems": problems,
    }


def test_a_reported_problem_makes_health_degraded_with_its_reason():
    reason = "2 of 2 job processes cannot start: child exited with code 3 during start-up"
    report = assess([_consumer_report([{"name": "children", "reason": reason}])],
                    stale_after_s=10, now=1000.5)  # fmt: skip
    assert report.as_dict() == {
        "status": "degraded",
        "processes": {"consumer": 1},
        "stale_loops": [
            {"process": "consumer:h:1", "role": "consumer", "loop": "children", "reason": reason}
        ],
    }
    assert assess([_consumer_report([])], stale_after_s=10, now=1000.5).status == "ok"
    older = _consumer_report([])
    del older["problems"]  # a report from before problems were published
    assert assess([older], stale_after_s=10, now=1000.5).status == "ok"


def test_a_queue_whose_only_consumer_cannot_start_says_why():
    queue = "jobcord.app.cpu"
    reason = "1 of 1 job processes cannot start: child exited with code 3"
    broken = {"queues": [queue], "slots": 0, "elastic": False, "degraded": reason}
    why = queue_unserved_reason("app", queue, [broken])
    assert why is not None and "can start" in why and "exited with code 3" in why
    starting = {**broken, "degraded": None}  # starting for the first time: no failure yet
    assert queue_unserved_reason("app", queue, [starting]) is None
    healthy = {**broken, "slots": 1, "degraded": None}
    assert queue_unserved_reason("app", queue, [broken, healthy]) is None
