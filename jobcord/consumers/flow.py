"""What a child's attempts carry along: their flow (where a finish takes the next work from),
the attempt under way, and the signal that its lease is gone."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from jobcord.scheduler.context import JobContext
from jobcord.scheduler.jobspec import JobSpec

from .claim import Claim

__all__ = ["Flow", "FLOW", "Attempt", "AttemptLost"]


@dataclass
class Flow:
    """A sequence of attempts: the queues its finishes take the next work from (None: all the
    consumer's) and what the last finish took. The loop has one; each lane of a shared run
    (consumers.lanes) has its own."""

    queues: list[str] | None = None
    claims: list[tuple[str, dict[str, str]]] | None = None
    closed: bool = False  # take nothing more
    until: float | None = None  # monotonic: take nothing more after this (a time slice)

    @property
    def open(self) -> bool:
        return not self.closed and (self.until is None or time.monotonic() < self.until)


#: The flow of the attempt ending on this thread (or asyncio task).
FLOW: ContextVar[Flow] = ContextVar("jobcord_flow")


@dataclass
class Attempt:
    """One attempt under way in this process."""

    record: Claim
    spec: JobSpec | None
    slot: int  # its entry on the board
    ctx: JobContext
    output_dir: Path | None
    started: float


class AttemptLost(BaseException):
    """A fenced write was refused: the request is no longer this attempt's. Raised inside
    the job (a BaseException, so that ``except Exception`` in job code does not swallow it)."""
