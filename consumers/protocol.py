"""The typed protocol between a consumer (parent) and its child process.

Every message about a task carries the task's fencing token ``(request_id, attempt)``. The
parent refuses a reply for anything but the task in hand (the child is then replaced): a reply
left over from an abandoned task can never become another request's output.

parent -> child: :class:`RunTask` | :class:`StopChild`
child -> parent: :class:`Ready` | :class:`StartupFailed` (once, at start), then per task any
number of :class:`Progress` / :class:`Chunk` / :class:`Waiting` and exactly one
:class:`Done` or :class:`Failed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Fence",
    "Task",
    "RunTask",
    "StopChild",
    "Ready",
    "StartupFailed",
    "Progress",
    "Chunk",
    "Waiting",
    "Done",
    "Failed",
    "TaskReply",
    "ChildMessage",
]


@dataclass(frozen=True)
class Fence:
    """The fencing token of one attempt: a reply carrying another is refused."""

    request_id: str
    attempt: int


@dataclass(frozen=True)
class Task:
    request_id: str
    attempt: int
    job: str
    input: Any
    output_dir: str

    @property
    def fence(self) -> Fence:
        return Fence(self.request_id, self.attempt)


# -- parent -> child -----------------------------------------------------------------------
@dataclass(frozen=True)
class RunTask:
    task: Task


@dataclass(frozen=True)
class StopChild:
    """Run the shutdown hooks and exit."""


# -- child -> parent, once at start ----------------------------------------------------------
@dataclass(frozen=True)
class Ready:
    pid: int


@dataclass(frozen=True)
class StartupFailed:
    traceback: str


# -- child -> parent, about one task ---------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    fence: Fence
    fraction: float
    message: str | None


@dataclass(frozen=True)
class Chunk:
    """One item a streaming cord yielded (already encoded)."""

    fence: Fence
    data: bytes


@dataclass(frozen=True)
class Waiting:
    """The job started (True) or stopped (False) waiting on requests it submitted."""

    fence: Fence
    on: bool


@dataclass(frozen=True)
class Done:
    fence: Fence
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Failed:
    fence: Fence
    error_type: str
    message: str
    traceback: str
    retryable: bool
    poisoned: bool  # the CUDA context is unusable: replace the child
    error_module: str  # where the error's class lives, so callers can raise it again


TaskReply = Progress | Chunk | Waiting | Done | Failed
ChildMessage = Ready | StartupFailed | TaskReply
