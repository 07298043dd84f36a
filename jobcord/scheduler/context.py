"""JobContext: what a running job may know and do besides its input.

A job declares a parameter annotated ``JobContext`` to receive it; every other parameter is
input. It lives here (not in producers or consumers) because both sides need the type.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bounds import InternalKey

__all__ = ["JobContext", "current_job", "running_job"]


class _Flag:
    """Set once, read any time (a threading.Event without its Condition: one per job)."""

    __slots__ = ("_on",)

    def __init__(self) -> None:
        self._on = False

    def set(self) -> None:
        self._on = True

    def is_set(self) -> bool:
        return self._on


@dataclass
class JobContext:
    request_id: str
    attempt: int
    app: str
    job: str
    output_dir: Path
    #: What the app's ``on_startup`` hooks returned (by hook name): a loaded model, say.
    state: dict[str, Any] = field(default_factory=dict)
    #: Devices this process is pinned to (``CUDA_VISIBLE_DEVICES`` value; empty for CPU).
    devices: str = ""
    _cancelled: _Flag = field(default_factory=lambda: _Flag(), repr=False)
    _report: Callable[[float, str | None], None] | None = field(default=None, repr=False)
    #: Tells the consumer this job is waiting on other requests (True) or working again, so
    #: that its slot can be lent meanwhile (no deadlock on a full class).
    _waiting: Callable[[bool], None] | None = field(default=None, repr=False)
    _calls: Iterator[int] = field(default_factory=itertools.count, repr=False)
    _waits: int = field(default=0, repr=False)
    _waits_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def child_call_key(self) -> str:
        """A deterministic idempotency key for this job's next call of another job: the same
        sequence on every attempt, so a retried parent gets its finished children back."""
        return InternalKey(f"jobcord-child:{self.request_id}:{next(self._calls)}")

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a blocking wait on other requests (nested and concurrent waits count once)."""
        with self._waits_lock:
            self._waits += 1
            first = self._waits == 1
        if first and self._waiting is not None:
            self._waiting(True)
        try:
            yield
        finally:
            with self._waits_lock:
                self._waits -= 1
                last = self._waits == 0
            if last and self._waiting is not None:
                self._waiting(False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (0..1); shown on the request's status."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be within 0..1, got {fraction}")
        if self._report is not None:
            self._report(fraction, message)

    @property
    def cancelled(self) -> bool:
        """True once the request is being stopped (cancel or timeout); the process is killed
        after a grace period, so long loops may check this to stop cleanly."""
        return self._cancelled.is_set()


_current: ContextVar[JobContext | None] = ContextVar("jobcord_current_job", default=None)


def current_job() -> JobContext | None:
    """The job running in this process (and task), if any: calls it makes become children."""
    return _current.get()


@contextmanager
def running_job(ctx: JobContext) -> Iterator[JobContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
