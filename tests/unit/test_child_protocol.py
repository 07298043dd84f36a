"""The parent/child protocol: fenced replies, a wait no duration can break, and a child that
is never reused after anything odd (the path by which outputs reached the wrong request)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from consumers.protocol import Fence, RunTask, Task
from consumers.slots import ChildSlot, OutcomeKind, StopReason

APP = "tests.apps.protocol:app"


@pytest.fixture
def slot() -> Iterator[ChildSlot]:
    s = ChildSlot(APP, name="t", kill_grace_s=1.0, log_format="console")
    s.start()
    try:
        yield s
    finally:
        s.close()


def task(rid: str, text: str, attempt: int = 1, delay_s: float = 0.0, job: str = "echo") -> Task:
    data = {"text": text, "delay_s": delay_s} if job == "echo" else {"text": text}
    return Task(rid, attempt, job, data, "")


def run(slot: ChildSlot, t: Task, timeout_s: float | None = 10.0, **callbacks):
    callbacks.setdefault("on_progress", lambda f, m: None)
    return slot.run(t, timeout_s, **callbacks)


def output(outcome) -> dict:
    assert outcome.kind is OutcomeKind.OK, outcome
    return json.loads(outcome.data)


@pytest.mark.parametrize("timeout_s", [3_000_000.0, 1e308, float("inf")])
def test_huge_timeouts_are_waited_out_in_slices(slot, timeout_s):
    assert output(run(slot, task("r1", "a", delay_s=0.05), timeout_s))["text"] == "a"


def test_a_reply_for_another_task_is_refused_and_the_child_replaced(slot):
    # A stale task is already in the child's pipe (as if a slot went back to the pool busy).
    slot.ensure_running()
    slot.conn.send(RunTask(task("old", "someone else's output")))
    first_pid = slot.process.pid
    outcome = run(slot, task("new", "mine"))
    assert outcome.kind is OutcomeKind.CRASHED and "protocol" in outcome.message
    again = output(run(slot, task("new", "mine", attempt=2)))
    assert again["text"] == "mine" and again["pid"] != first_pid


def test_replies_carry_the_fence_of_their_task(slot):
    seen: list[tuple[float, str | None]] = []
    outcome = run(
        slot, task("r9", "x", attempt=3, job="chatty"), on_progress=lambda f, m: seen.append((f, m))
    )
    assert outcome.kind is OutcomeKind.OK and seen == [(0.5, "half")]
    assert task("r9", "x", attempt=3).fence == Fence("r9", 3)


def test_an_error_while_waiting_dooms_the_child(slot):
    def boom(f: float, m: str | None) -> None:
        raise RuntimeError("redis went away while reporting progress")

    pid = slot.process.pid
    with pytest.raises(RuntimeError):
        run(slot, task("r1", "x", job="chatty"), on_progress=boom)
    # The busy child is never handed the next task: a fresh one answers with its own output.
    nxt = output(run(slot, task("r2", "second")))
    assert nxt["text"] == "second" and nxt["pid"] != pid


def test_a_stop_ends_the_wait_and_the_next_task_gets_a_fresh_child(slot):
    pid = slot.process.pid
    started = time.monotonic()
    threading.Timer(0.2, slot.stop_current, args=(StopReason.CANCEL,)).start()
    outcome = run(slot, task("r1", "x", delay_s=30))
    assert outcome.kind is OutcomeKind.STOPPED and outcome.stop_reason is StopReason.CANCEL
    assert time.monotonic() - started < 5
    nxt = output(run(slot, task("r2", "y")))
    assert nxt["text"] == "y" and nxt["pid"] != pid


def test_a_lost_lease_lets_a_reply_already_on_its_way_end_the_task(slot):
    # The child's own finish removes the lease; a renewal just then reads "lost". The reply
    # that follows must still end the task, and the healthy child stays.
    t = task("r-lost", "done", delay_s=0.3)
    threading.Timer(0.1, slot.stop_task, args=(t.fence, StopReason.LOST)).start()
    pid = slot.process.pid
    assert output(run(slot, t))["text"] == "done"
    assert slot.ready_for_next and slot.process.pid == pid


def test_a_lost_lease_still_abandons_a_task_that_does_not_answer(slot):
    t = task("r-lost-long", "never", delay_s=30)
    threading.Timer(0.1, slot.stop_task, args=(t.fence, StopReason.LOST)).start()
    started = time.monotonic()
    outcome = run(slot, t)
    assert outcome.kind is OutcomeKind.STOPPED and outcome.stop_reason is StopReason.LOST
    assert time.monotonic() - started < 5 and not slot.ready_for_next


def test_the_child_may_finish_only_jobs_whose_replies_cannot_be_overtaken():
    # A job with a JobContext sends progress through the pipe, which the parent writes as it
    # reads: a finish by the child could come first and leave the last progress refused.
    from consumers.runner import Runner
    from storage.records import RequestRecord
    from storage.settings import load_settings
    from tests.apps import lifecycle

    settings = load_settings()
    runner = Runner(lifecycle.app, None, None, None, [], settings, "w")  # type: ignore[arg-type]
    record = RequestRecord(
        request_id="r", app="lifecycle", job="x", queue="q", status="IN_PROGRESS", created_at=0.0
    )
    jobs = lifecycle.app.jobs
    assert runner._leave(jobs["progress"], record, "t") is None  # takes a JobContext
    leave = runner._leave(jobs["area"], record, "t")  # takes no JobContext
    assert leave is not None and leave.token == "t"
    assert runner._leave(jobs["area"], record.model_copy(update={"attempt": 2}), "t") is None
