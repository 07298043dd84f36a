"""The typed messages a child process sends its parent over their pipe.

Per job nothing crosses the pipe: a child fetches, claims, runs and ends its attempts itself
and shows what it runs on the shared board (``jobcord.consumers.board``). The pipe carries what is
rare: start-up, a job that waits on other requests (its slot is lent), the child's job
counts for metrics, and errors of its fetch loop. Anything the parent does not expect is
refused and the child replaced.

child -> parent: :class:`Ready` | :class:`StartupFailed` (once, at start), then any number of
:class:`Waiting`, :class:`Stats`, :class:`LoopFailed`.
parent -> child: nothing; the parent asks a child to stop through the board (and wakes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Fence", "Ready", "StartupFailed", "Waiting", "Stats", "LoopFailed", "ChildMessage"]


@dataclass(frozen=True)
class Fence:
    """The fencing token of one attempt: a write carrying another is refused."""

    request_id: str
    attempt: int


@dataclass(frozen=True)
class Ready:
    pid: int


@dataclass(frozen=True)
class StartupFailed:
    traceback: str


@dataclass(frozen=True)
class Waiting:
    """A job started (True) or stopped (False) waiting on requests it submitted: lend its
    slot meanwhile (the parent starts one more child like this one)."""

    fence: Fence
    on: bool


@dataclass(frozen=True)
class Stats:
    """The child's job counts so far (cumulative, so a lost message loses nothing):
    finished attempts by (app, job, status), and histograms by (name, app, job) as counts per
    bucket (``jobcord.consumers.metrics.HISTOGRAMS``) followed by their sum."""

    finished: dict[tuple[str, str, str], int] = field(default_factory=dict)
    histograms: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopFailed:
    """A pass of the child's fetch loop raised (it backs off and goes on)."""

    loop: str
    error: str


ChildMessage = Ready | StartupFailed | Waiting | Stats | LoopFailed
