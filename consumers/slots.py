"""A slot: one warm child process and the means to stop it for real.

``run`` sends a task and waits on the pipe *and* a wake-up socket at once (no polling), so a
timeout, a cancel or a lost lease ends the wait at once; the child is then terminated
(SIGTERM, SIGKILL after the grace period) and a fresh one started, running startup again.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import structlog

from storage.errors import JobcordError

from .child import Task, child_main
from .metrics import CHILD_RESTARTS

__all__ = ["ChildSlot", "Outcome", "Recycling", "StartupFailed"]

log = structlog.get_logger("jobcord.slot")
_spawn = multiprocessing.get_context("spawn")
# Children die with the *thread* that started them (PR_SET_PDEATHSIG is per thread), so every
# child is started from this one thread, which lives as long as the consumer process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobcord-spawner")


class StartupFailed(JobcordError):
    pass


@dataclass
class Outcome:
    kind: str  # ok | error | timeout | stopped | crashed
    content_type: str = ""
    data: bytes = b""
    error_type: str = ""
    message: str = ""
    traceback: str | None = None
    retryable: bool = True
    stop_reason: str = ""  # with kind == "stopped": cancel | lost | shutdown
    error_module: str = ""  # where the error's class lives, so callers can raise it again


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
        self._stop_reason: str | None = None
        self._retired = False
        # Set when a task was abandoned (timeout, cancel, crash) or the child must be recycled:
        # the outcome is recorded first and the child killed afterwards, in ensure_running,
        # so callers learn fast.
        self._doomed = False
        self._replace_reason: str | None = None

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
        except EOFError:
            msg = ("startup_failed", f"child exited with code {self.process.exitcode}")
        if msg[0] != "ready":
            self.kill()
            raise StartupFailed(f"{self.name}: on_startup failed:\n{msg[1]}")
        log.info("child ready", slot=self.name, pid=msg[1], env=self.env or None)

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
                self.conn.send(("stop",))
                self.process.join(self.kill_grace_s)
            except (OSError, BrokenPipeError):
                pass
        self.kill()

    # -- work ------------------------------------------------------------------------------
    def stop_current(self, reason: str) -> None:
        """From any thread: end the running task now (cancel | lost | shutdown)."""
        if reason == "shutdown":
            self._retired = True
        self._stop_reason = reason
        self._wake_w.send(b"x")

    def run(
        self,
        task: Task,
        timeout_s: float | None,
        on_progress: Callable[[float, str | None], None],
        on_chunk: Callable[[bytes], None] | None = None,
        on_waiting: Callable[[bool], None] | None = None,
    ) -> Outcome:
        self.ensure_running()
        self._drain_wake()
        self._stop_reason = None
        self.conn.send(("run", task))
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._doomed = True
                return Outcome("timeout", message=f"exceeded its timeout of {timeout_s} s")
            ready = wait([self.conn, self._wake_r], remaining)
            if self._wake_r in ready and self._stop_reason:
                self._doomed = True
                return Outcome("stopped", stop_reason=self._stop_reason)
            if self.conn in ready:
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    self.process.join(self.kill_grace_s)
                    code = self.process.exitcode
                    self.kill()
                    return Outcome("crashed", message=f"job process died (exit code {code})")
                if msg[0] == "progress":
                    on_progress(msg[1], msg[2])
                elif msg[0] == "chunk" and on_chunk is not None:
                    on_chunk(msg[1])
                elif msg[0] == "waiting" and on_waiting is not None:
                    on_waiting(msg[1])
                elif msg[0] == "ok":
                    self._after_job(poisoned=False)
                    return Outcome("ok", content_type=msg[1], data=msg[2])
                elif msg[0] == "error":
                    self._after_job(poisoned=msg[5])
                    return Outcome(
                        "error",
                        error_type=msg[1],
                        message=msg[2],
                        traceback=msg[3],
                        retryable=msg[4],
                        error_module=msg[6],
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
