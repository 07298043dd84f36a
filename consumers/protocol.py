"""The typed protocol between a consumer (parent) and its child process.

Every message about a task carries the task's fencing token ``(request_id, attempt)``. The
parent refuses a reply for anything but the task in hand (the child is then replaced): a reply
left over from an abandoned task can never become another request's output.

parent -> child: :class:`RunTask` | :class:`StopChild`
child -> parent: :class:`Ready` | :class:`StartupFailed` (once, at start), then per task any
number of :class:`Progress` / :class:`Chunk` / :class:`Waiting` and exactly one
:class:`Done`, :class:`Finished` or :class:`Failed`.

The hot path: a task that carries :class:`FinishHere` may be ended by the child itself when
it succeeds with a small JSON output (one fenced finish script, which also acks the broker
message), so the parent's one Python process is not every job's bottleneck. Anything else
(a large or binary output, files, a Redis error on the way) comes back as :class:`Done` and
the parent stores it as before.
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
    "Finished",
    "FinishHere",
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
class FinishHere:
    """Leave for the child to end a small successful attempt itself: the lease token that
    fences the finish, the broker message it acks (broker id, queue, message id), and the
    largest output that may stay inline."""

    token: str
    ack: tuple[str, str, str] | None
    inline_max_bytes: int


@dataclass(frozen=True)
class Task:
    request_id: str
    attempt: int
    job: str
    input: Any
    output_dir: str
    finish: FinishHere | None = None

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
class Finished:
    """The child ended the attempt itself (see :class:`FinishHere`): nothing left to store."""

    fence: Fence
    finished: bool  # False: the lease was no longer ours, nothing was written
    acked: bool  # the finish script acked the broker message too


@dataclass(frozen=True)
class Failed:
    fence: Fence
    error_type: str
    message: str
    traceback: str
    retryable: bool
    poisoned: bool  # the CUDA context is unusable: replace the child
    error_module: str  # where the error's class lives, so callers can raise it again


TaskReply = Progress | Chunk | Waiting | Done | Finished | Failed
ChildMessage = Ready | StartupFailed | TaskReply
