"""The board a consumer shares with its children: consistent reads, fences that fit, and a
parent that refuses whatever a child should never send."""

from __future__ import annotations

import time

import pytest

from jobcord.consumers.board import Board, Phase
from jobcord.consumers.metrics import JobCounts
from jobcord.consumers.protocol import Fence, LoopFailed, Ready, Stats
from jobcord.consumers.startups import StartFailures
from jobcord.consumers.supervisor import Supervisor
from jobcord.scheduler.jobspec import AppRegistry
from jobcord.storage.settings import load_settings


def test_an_entry_reads_back_as_written_and_goes_when_cleared():
    board = Board(2, 1)
    child = board.child(1)
    child.start(0, "a" * 32, 3, "tok-1", 2, 5.0)
    [entry] = child.running()
    assert (entry.request_id, entry.attempt, entry.token, entry.job) == ("a" * 32, 3, "tok-1", 2)
    assert entry.phase is Phase.RUNNING and entry.deadline - entry.started == pytest.approx(5.0)
    assert board.child(0).running() == []  # another child's place is its own
    child.ending(0)
    assert child.running()[0].phase is Phase.ENDING
    child.clear(0)
    assert child.running() == []


@pytest.mark.parametrize("timeout_s", [None, 3_000_000.0, 1e308, float("inf")])
def test_any_timeout_gives_a_deadline_that_compares(timeout_s):
    child = Board(1, 1).child(0)
    child.start(0, "b" * 32, 1, "t", 0, timeout_s)
    [entry] = child.running()
    if timeout_s is None:
        assert entry.deadline is None
    else:
        assert entry.deadline > time.monotonic() + 1e6


def test_an_entry_caught_mid_write_reads_as_unknown():
    board = Board(1, 1)
    child = board.child(0)
    child.start(0, "c" * 32, 1, "t", 0, None)
    board.entries[0].seq += 1  # a writer killed between its two increments
    assert child.running() == []


def test_a_fence_that_does_not_fit_is_refused_not_cut():
    child = Board(1, 1).child(0)
    with pytest.raises(ValueError):
        child.start(0, "d" * 32, 1, "t" * 100, 0, None)


def test_reset_gives_a_new_child_a_clean_place():
    child = Board(1, 1).child(0)
    child.start(0, "e" * 32, 1, "t", 0, None)
    child.ask_stop()
    child.job_done()
    child.reset()
    assert child.running() == [] and not child.stop_asked and child.jobs_done == 0


class _FakeChild:
    """Just what the supervisor's message handling touches."""

    def __init__(self) -> None:
        self.name, self.restarts, self.borrowed, self.devices = "cpu-0", 0, False, ""
        self.life, self.stats, self.replace_reason = None, Stats(), None
        self.stopped_with: list[str] = []
        self.was_ready, self.start_failures = False, StartFailures()

    def signal_stop(self) -> None:
        self.stopped_with.append(self.replace_reason or "")

    class config:  # noqa: N801 - stands in for a ChildConfig
        place = 0


def _supervisor() -> Supervisor:
    settings = load_settings()
    return Supervisor(
        AppRegistry("board-test"),
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        JobCounts(),
        Board(1, 1),
        [],
        settings,
        max_lent=0,
        make_borrowed=lambda place, like: None,  # type: ignore[arg-type,return-value]
    )


def test_a_message_no_child_sends_gets_the_child_replaced():
    sup, child = _supervisor(), _FakeChild()
    sup._message(child, Fence("x" * 32, 1))  # type: ignore[arg-type]
    assert child.stopped_with == ["protocol violation"]


def test_child_messages_reach_health_metrics_and_life():
    sup, child = _supervisor(), _FakeChild()
    sup._message(child, Ready(123))  # type: ignore[arg-type]
    assert child.life is not None and child.life.value == "ready"
    stats = Stats({("a", "j", "SUCCEEDED"): 2})
    sup._message(child, stats)  # type: ignore[arg-type]
    assert child.stats is stats
    sup._message(child, LoopFailed("fetch", "ConnectionError: gone"))  # type: ignore[arg-type]
    health = sup.fetch_state.snapshot()
    assert health.consecutive_errors == 1 and "cpu-0: ConnectionError" in health.last_error


def test_job_counts_merge_across_processes():
    mine, theirs = JobCounts(), JobCounts()
    mine.finished("a", "j", "SUCCEEDED")
    theirs.finished("a", "j", "SUCCEEDED")
    theirs.ran("a", "j", 0.02)
    assert theirs.news() is not None and theirs.news() is None  # sent once per change
    mine.add(theirs.snapshot())
    totals = mine.snapshot()
    assert totals.finished == {("a", "j", "SUCCEEDED"): 2}
    cells = totals.histograms[("run", "a", "j")]
    assert sum(cells[:-1]) == 1 and cells[-1] == 0.02  # one observation, then the sum
