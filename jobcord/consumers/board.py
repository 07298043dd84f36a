"""The board: what each child process is running, in memory its parent shares with it.

A child fetches, claims and ends its attempts itself; it writes an entry here when it starts
one and clears it when the attempt has ended, so nothing crosses a pipe per job. The parent
reads the entries to renew their leases, to enforce timeouts, to find the process a cancel
is for, and to end the attempts of a child that died or was killed. Every entry carries its
attempt's fence ``(request_id, attempt)`` and lease token, and everything the parent does
with one goes through a script fenced by that token: an entry read a moment too late can
make a write be refused, never land on another attempt.

Entries are written under a sequence number (a seqlock): odd while the child writes, even
when done. A reader retries until it sees the same even number before and after; a child
killed in the middle of a write leaves an odd number, which reads as "not known" (its lease
then runs out and recovery requeues the attempt).
"""

from __future__ import annotations

import ctypes
import enum
import multiprocessing
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Board", "ChildBoard", "Phase", "Running", "TOKEN_MAX"]

#: Longest lease token an entry holds (storage.requests makes ~30 characters).
TOKEN_MAX = 48


class Phase(enum.IntEnum):
    FREE = 0
    RUNNING = 1  # the job body runs: its timeout applies
    ENDING = 2  # the body returned; its outcome is being stored (no timeout, lease renewed)
    BATCH = 3  # one request of a batch: its timeout applies; a cancel ends it, not the call


class _Entry(ctypes.Structure):
    _fields_ = [
        ("seq", ctypes.c_uint64),
        ("phase", ctypes.c_int32),
        ("attempt", ctypes.c_int32),
        ("job", ctypes.c_int32),  # index into the app's job names (metrics)
        ("request_id", ctypes.c_char * 32),
        ("token", ctypes.c_char * TOKEN_MAX),
        ("started", ctypes.c_double),  # time.monotonic(): system-wide on Linux
        ("deadline", ctypes.c_double),  # monotonic; 0: no timeout
    ]


class _Control(ctypes.Structure):
    _fields_ = [
        ("stop", ctypes.c_int32),  # parent -> child: take no more work, exit once idle
        ("parent_beat", ctypes.c_double),  # monotonic: the parent's supervisor last looked
        ("fetched_at", ctypes.c_double),  # monotonic: the fetch loop's last completed pass
        ("jobs_done", ctypes.c_uint64),
    ]


@dataclass(frozen=True)
class Running:
    """One entry as read: an attempt a child runs (or is ending)."""

    slot: int  # the entry's index within its child
    seq: int
    phase: Phase
    request_id: str
    attempt: int
    token: str
    job: int
    started: float
    deadline: float | None

    @property
    def fence(self) -> tuple[str, int]:
        return (self.request_id, self.attempt)


class ChildBoard:
    """One child's part of the board: its control word and its ``width`` entries."""

    def __init__(self, entries: Any, control: Any, first: int, width: int) -> None:
        self._entries = entries
        self._control = control
        self._first = first
        self.width = width

    # -- written by the child --------------------------------------------------------------
    def start(
        self,
        slot: int,
        request_id: str,
        attempt: int,
        token: str,
        job: int,
        timeout_s: float | None,
        phase: Phase = Phase.RUNNING,
    ) -> None:
        rid, tok = request_id.encode(), token.encode()
        if len(rid) > 32 or len(tok) > TOKEN_MAX:
            raise ValueError(f"fence too long for the board: {request_id!r} {token!r}")
        e = self._entries[self._first + slot]
        now = time.monotonic()
        e.seq += 1  # odd: being written
        e.request_id = rid
        e.token = tok
        e.attempt = attempt
        e.job = job
        e.started = now
        e.deadline = 0.0 if timeout_s is None else now + min(timeout_s, 1e12)
        e.phase = phase
        e.seq += 1

    def ending(self, slot: int) -> None:
        """The body returned: its timeout no longer applies while the outcome is stored."""
        e = self._entries[self._first + slot]
        e.seq += 1
        e.phase = Phase.ENDING
        e.seq += 1

    def clear(self, slot: int) -> None:
        e = self._entries[self._first + slot]
        e.seq += 1
        e.phase = Phase.FREE
        e.seq += 1

    def fetched(self) -> None:
        self._control.fetched_at = time.monotonic()

    def job_done(self) -> None:
        self._control.jobs_done += 1

    @property
    def stop_asked(self) -> bool:
        return bool(self._control.stop)

    def parent_silent_for(self) -> float:
        """Seconds since the parent last looked at the board. A frozen or stuck parent renews
        no lease: its children must not take work it cannot keep (SIGSTOP of the parent
        alone, a deadlock), or every request they claimed would run out its lease."""
        return time.monotonic() - self._control.parent_beat

    # -- written by the parent -------------------------------------------------------------
    def ask_stop(self) -> None:
        self._control.stop = 1

    def beat(self) -> None:
        self._control.parent_beat = time.monotonic()

    def reset(self) -> None:
        """For a new child in this place: no stop asked, no entries, counters from zero."""
        self._control.stop = 0
        self._control.parent_beat = time.monotonic()
        self._control.fetched_at = 0.0
        self._control.jobs_done = 0
        for slot in range(self.width):
            e = self._entries[self._first + slot]
            e.seq = (e.seq + 2) & ~1  # even: any reader's old snapshot no longer matches
            e.phase = Phase.FREE

    # -- read by the parent ----------------------------------------------------------------
    @property
    def fetched_at(self) -> float:
        return float(self._control.fetched_at)

    @property
    def jobs_done(self) -> int:
        return int(self._control.jobs_done)

    def running(self) -> list[Running]:
        """The entries in use now (each read consistently; one being written is skipped)."""
        out = []
        for slot in range(self.width):
            entry = self.read(slot)
            if entry is not None:
                out.append(entry)
        return out

    def read(self, slot: int) -> Running | None:
        e = self._entries[self._first + slot]
        for _ in range(100):
            before = e.seq
            if before & 1:
                continue
            phase, attempt, job = e.phase, e.attempt, e.job
            rid, token, started, deadline = e.request_id, e.token, e.started, e.deadline
            if e.seq != before:
                continue
            if phase == Phase.FREE:
                return None
            return Running(
                slot,
                before,
                Phase(phase),
                rid.decode(),
                attempt,
                token.decode(),
                job,
                started,
                deadline or None,
            )
        return None  # a writer died mid-write (or keeps writing): not known


class Board:
    """Entries for ``places`` children of ``width`` attempts each, in shared memory made
    before any child starts (spawned children get it as an argument)."""

    def __init__(self, places: int, width: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.places, self.width = places, width
        self.entries = ctx.RawArray(_Entry, places * width)
        self.controls = ctx.RawArray(_Control, places)

    def child(self, place: int) -> ChildBoard:
        return ChildBoard(self.entries, self.controls[place], place * self.width, self.width)

    def handle(self) -> tuple[Any, Any, int]:
        """What a child process needs to find its part: (entries, controls, width)."""
        return self.entries, self.controls, self.width


def child_board(handle: tuple[Any, Any, int], place: int) -> ChildBoard:
    entries, controls, width = handle
    return ChildBoard(entries, controls[place], place * width, width)
