"""A slot: one warm child process and the means to stop it for real.

``run`` sends a task and waits on the pipe *and* a wake-up socket at once (no polling), so a
timeout, a cancel or a lost lease ends the wait at once; the child is then terminated
(SIGTERM, SIGKILL after the grace period) and a fresh one started, running startup again.

A child is trusted with the next task only when the last one ended cleanly: a reply for
another task (a fence mismatch), a message of the wrong type, or any exception while waiting
dooms the child, so a busy or confused child can never answer for someone else's request.
"""

from __future__ import annotations

import enum
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import structlog

from storage.errors import JobcordError

from .child import child_main
from .metrics import CHILD_RESTARTS
from .protocol import (
    Chunk,
    Done,
    Failed,
    Fence,
    Finished,
    Progress,
    Ready,
    RunTask,
    StopChild,
    Task,
    Waiting,
)
from .protocol import StartupFailed as StartupFailedMessage

__all__ = ["ChildSlot", "Outcome", "OutcomeKind", "StopReason", "Recycling", "StartupFailed"]

log = structlog.get_logger("jobcord.slot")
_spawn = multiprocessing.get_context("spawn")
# Children die with the *thread* that started them (PR_SET_PDEATHSIG is per thread), so every
# child is started from this one thread, which lives as long as the consumer process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobcord-spawner")
#: The longest single wait handed to the OS: a long timeout is waited out in slices, so no
#: duration, however large, can overflow a system call.
_MAX_WAIT_SLICE_S = 60.0
#: After a lease is reported lost, how long a reply from the child may still end the wait.
_LOST_REPLY_GRACE_S = 1.0


class StartupFailed(JobcordError):
    pass


class OutcomeKind(enum.Enum):
    OK = "ok"
    ERROR = "error"  # the job raised
    TIMEOUT = "timeout"
    STOPPED = "stopped"  # see StopReason
    CRASHED = "crashed"  # the child died or broke the protocol


class StopReason(enum.Enum):
    CANCEL = "cancel"
    LOST = "lost"  # the lease is no longer ours
    SHUTDOWN = "shutdown"


@dataclass
class Outcome:
    kind: OutcomeKind
    content_type: str = ""
    data: bytes = b""
    error_type: str = ""
    message: str = ""
    traceback: str | None = None
    retryable: bool = True
    stop_reason: StopReason | None = None  # with kind STOPPED
    error_module: str = ""  # where the error's class lives, so callers can raise it again
    #: With kind OK: the child ended the attempt itself (nothing left to store).
    ended_by_child: Finished | None = None


@dataclass(frozen=True)
class Recycling:
    """When to replace a healthy child anyway (both off by default)."""

    max_jobs: int = 0  # after this many jobs
    memory_fraction: float = 0.0  # when, after a job, it still holds this much of a GPU
    #: pid -> the largest fraction of one of its GPUs that process holds (None: unknown).
    probe: Callable[[int], float | None] | None = None

    def reason(self, jobs_done: int, pid: int) -> str | None:
        if self.max_jobs and jobs_done >= self.max_jobs:
            return f"ran {jobs_done} jobs"
        if self.memory_fraction and self.probe is not None:
            held = self.probe(pid)
            if held is not None and held >= self.memory_fraction:
                return f"holds {held:.0%} of a GPU's memory after a job"
        return None


class ChildSlot:
    def __init__(
        self,
        app_ref: str,
        *,
        name: str,
        env: dict[str, str] | None = None,
        kill_grace_s: float = 3.0,
        startup_timeout_s: float = 600.0,
        log_format: str = "json",
        recycling: Recycling | None = None,
    ) -> None:
        self.app_ref = app_ref
        self.recycling = recycling or Recycling()
        #: Started while a job waits on its children, retired when they are no longer needed.
        self.borrowed = False
        self.jobs_done = 0  # by the current child
        self.name = name
        self.env = env or {}
        self.kill_grace_s = kill_grace_s
        self.startup_timeout_s = startup_timeout_s
        self.log_format = log_format
        self.process: Any = None
        self.conn: Any = None
        self.restarts = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop_reason: StopReason | None = None
        # The task in hand, so that a stop meant for one task never reaches the next (the
        # runner hands the slot on before it has recorded the last task's outcome).
        self._current: Fence | None = None
        self._stopping = threading.Lock()
        self._retired = False
        # Set when a task was abandoned (timeout, cancel, crash) or the child must be recycled:
        # the outcome is recorded first and the child killed afterwards, in ensure_running,
        # so callers learn fast.
        self._doomed = False
        self._replace_reason: str | None = None

    @property
    def devices(self) -> str:
        """The GPU UUIDs this slot's child is pinned to, comma-separated ("" for CPU)."""
        return self.env.get("CUDA_VISIBLE_DEVICES", "")

    def sibling(self) -> ChildSlot:
        """A new slot like this one (same app, devices, settings), not started, borrowed."""
        twin = ChildSlot(
            self.app_ref,
            name=f"{self.name}-lent",
            env=self.env,
            kill_grace_s=self.kill_grace_s,
            startup_timeout_s=self.startup_timeout_s,
            log_format=self.log_format,
            recycling=self.recycling,
        )
        twin.borrowed = True
        return twin

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        parent_conn, child_conn = _spawn.Pipe(duplex=True)
        self.process = _spawn.Process(
            target=child_main,
            args=(self.app_ref, child_conn, self.env, self.log_format),
            name=f"jobcord-{self.name}",
        )
        _spawner.submit(self.process.start).result()
        child_conn.close()
        self.conn = parent_conn
        self.jobs_done = 0
        if not parent_conn.poll(self.startup_timeout_s):
            self.kill()
            raise StartupFailed(f"{self.name}: startup took longer than {self.startup_timeout_s} s")
        try:
            msg = parent_conn.recv()
        except (EOFError, OSError):
            msg = StartupFailedMessage(f"child exited with code {self.process.exitcode}")
        if not isinstance(msg, Ready):
            self.kill()
            detail = msg.traceback if isinstance(msg, StartupFailedMessage) else repr(msg)
            raise StartupFailed(f"{self.name}: on_startup failed:\n{detail}")
        log.info("child ready", slot=self.name, pid=msg.pid, env=self.env or None)

    def ensure_running(self) -> None:
        """Replace a child that was killed or died (its startup hooks run again)."""
        if self.process is not None and self.process.is_alive() and not self._doomed:
            return
        if self._retired:  # the consumer is shutting down: kill, do not replace
            self.kill()
            return
        started = time.monotonic()
        reason = self._replace_reason or "stopped or died"
        self.kill()
        self.restarts += 1
        CHILD_RESTARTS.labels(self.name, reason.split(" ")[0]).inc()
        self.start()
        log.info(
            "child replaced",
            slot=self.name,
            reason=reason,
            seconds=round(time.monotonic() - started, 3),
        )

    def kill(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; always reaps the process."""
        proc = self.process
        if proc is None:
            return
        if proc.is_alive():
            proc.terminate()
            proc.join(self.kill_grace_s)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None
        self._doomed = False
        self._replace_reason = None

    def close(self) -> None:
        """Ask the child to run its shutdown hooks and exit; kill it if it does not."""
        if self.process is not None and self.process.is_alive() and self.conn is not None:
            try:
                self.conn.send(StopChild())
                self.process.join(self.kill_grace_s)
            except (OSError, BrokenPipeError):
                pass
        self.kill()

    # -- work ------------------------------------------------------------------------------
    def stop_current(self, reason: StopReason | str) -> None:
        """From any thread: end the running task now (a StopReason or its value)."""
        reason = StopReason(reason)
        if reason is StopReason.SHUTDOWN:
            self._retired = True
        self._stop_reason = reason
        self._wake_w.send(b"x")

    def stop_task(self, fence: Fence, reason: StopReason | str) -> bool:
        """From any thread: end task ``fence`` now, if it is the one this slot runs (a stop
        for a finished task is dropped, never turned on the task after it)."""
        with self._stopping:
            if self._current != fence:
                return False
            self.stop_current(reason)
            return True

    @property
    def ready_for_next(self) -> bool:
        """Whether the child can take a task now (not doomed, alive, not being shut down)."""
        alive = self.process is not None and self.process.is_alive()
        return alive and not self._doomed and not self._retired

    def run(
        self,
        task: Task,
        timeout_s: float | None,
        on_progress: Callable[[float, str | None], None],
        on_chunk: Callable[[bytes], None] | None = None,
        on_waiting: Callable[[bool], None] | None = None,
    ) -> Outcome:
        """Run one task to its outcome. Whatever goes wrong in here (a callback raising, a
        pipe error), the child is doomed, so it is never handed another task while busy."""
        self.ensure_running()
        with self._stopping:
            self._drain_wake()
            self._stop_reason = None
            self._current = task.fence
        try:
            return self._run(task, timeout_s, on_progress, on_chunk, on_waiting)
        except BaseException:
            self._doomed = True
            self._replace_reason = "error while waiting on it"
            raise
        finally:
            with self._stopping:
                self._current = None

    def _run(
        self,
        task: Task,
        timeout_s: float | None,
        on_progress: Callable[[float, str | None], None],
        on_chunk: Callable[[bytes], None] | None,
        on_waiting: Callable[[bool], None] | None,
    ) -> Outcome:
        self.conn.send(RunTask(task))
        fence = task.fence
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        lost_by: float | None = None  # a lost lease: when to stop waiting for the child
        while True:
            now = time.monotonic()
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                self._doomed = True
                return Outcome(
                    OutcomeKind.TIMEOUT, message=f"exceeded its timeout of {timeout_s} s"
                )
            if lost_by is not None and now >= lost_by:
                self._doomed = True
                return Outcome(
                    OutcomeKind.STOPPED, stop_reason=self._stop_reason or StopReason.LOST
                )
            wait_s = min(remaining or _MAX_WAIT_SLICE_S, _MAX_WAIT_SLICE_S)
            if lost_by is not None:
                wait_s = min(wait_s, lost_by - now)
            ready = wait([self.conn, self._wake_r], wait_s)
            if self._wake_r in ready and self._stop_reason is StopReason.LOST:
                # A child that ends its attempt itself removes the lease, so a renewal in
                # between reads "lost": give its reply a moment before abandoning the attempt
                # (a cancel or shutdown meanwhile still stops it at once).
                self._drain_wake()
                if lost_by is None:
                    lost_by = time.monotonic() + _LOST_REPLY_GRACE_S
            elif self._wake_r in ready and self._stop_reason is not None:
                self._doomed = True
                return Outcome(OutcomeKind.STOPPED, stop_reason=self._stop_reason)
            if self.conn not in ready:
                continue
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                self.process.join(self.kill_grace_s)
                code = self.process.exitcode
                self.kill()
                return Outcome(OutcomeKind.CRASHED, message=f"job process died (exit code {code})")
            if getattr(msg, "fence", None) != fence:
                # A reply for another task (or no task at all): the child cannot be trusted
                # with this one. Replace it; the attempt ends as a lost worker (re-run).
                self._doomed = True
                self._replace_reason = "protocol violation"
                log.error(
                    "child reply refused", slot=self.name, expected=fence, got=repr(msg)[:200]
                )
                return Outcome(OutcomeKind.CRASHED, message="job process broke the protocol")
            if isinstance(msg, Progress):
                on_progress(msg.fraction, msg.message)
            elif isinstance(msg, Chunk):
                if on_chunk is not None:
                    on_chunk(msg.data)
            elif isinstance(msg, Waiting):
                if on_waiting is not None:
                    on_waiting(msg.on)
            elif isinstance(msg, Done):
                self._after_job(poisoned=False)
                return Outcome(OutcomeKind.OK, content_type=msg.content_type, data=msg.data)
            elif isinstance(msg, Finished):
                self._after_job(poisoned=False)
                return Outcome(OutcomeKind.OK, ended_by_child=msg)
            elif isinstance(msg, Failed):
                self._after_job(poisoned=msg.poisoned)
                return Outcome(
                    OutcomeKind.ERROR,
                    error_type=msg.error_type,
                    message=msg.message,
                    traceback=msg.traceback,
                    retryable=msg.retryable,
                    error_module=msg.error_module,
                )

    def _after_job(self, *, poisoned: bool) -> None:
        """Doom a child whose CUDA context is poisoned, or that is due for recycling."""
        self.jobs_done += 1
        reason = "cuda context poisoned" if poisoned else None
        reason = reason or self.recycling.reason(self.jobs_done, self.process.pid)
        if reason is not None:
            self._doomed = True
            self._replace_reason = reason

    def _drain_wake(self) -> None:
        self._wake_r.setblocking(False)
        try:
            while self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass
        finally:
            self._wake_r.setblocking(True)
