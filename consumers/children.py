"""One place of a consumer: a child process, started, watched, stopped and replaced.

A place keeps its board entries and its name across the processes that hold it. Starting is
not waited on here (a model may take minutes to load): the child's ``Ready`` or
``StartupFailed`` arrives on its pipe and the supervisor's loop reads it. Stopping a job for
real is a kill: SIGTERM (the job may see ``ctx.cancelled``), SIGKILL after the grace period.
"""

from __future__ import annotations

import contextlib
import enum
import multiprocessing
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from .board import ChildBoard
from .child import ChildConfig, child_main
from .protocol import Fence, Stats

__all__ = ["ChildProcess", "Life", "StopReason"]

log = structlog.get_logger("jobcord.children")
_spawn = multiprocessing.get_context("spawn")
# Children die with the *thread* that started them (PR_SET_PDEATHSIG is per thread), so every
# child is started from this one thread, which lives as long as the consumer process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobcord-spawner")


class Life(enum.Enum):
    STARTING = "starting"  # spawned; startup hooks running
    READY = "ready"  # fetching and running attempts on its own
    STOPPING = "stopping"  # signalled; killed for good at kill_at
    GONE = "gone"  # exited and reaped (or never started)


class StopReason(enum.Enum):
    TIMEOUT = "timeout"
    CANCEL = "cancel"
    LOST = "lost"  # the lease is no longer ours
    SHUTDOWN = "shutdown"


class ChildProcess:
    def __init__(
        self,
        config: ChildConfig,
        board: ChildBoard,
        board_handle: tuple[Any, Any, int],
        settings: Any,
        *,
        name: str,
        kill_grace_s: float,
        startup_timeout_s: float,
        borrowed: bool = False,
    ) -> None:
        self.config = config
        self.board = board
        self._board_handle = board_handle
        self._settings = settings
        self.name = name
        self.kill_grace_s = kill_grace_s
        self.startup_timeout_s = startup_timeout_s
        #: Started while a job waits on its children, retired when they no longer need it.
        self.borrowed = borrowed
        #: Started by the autoscaler (``consumers.scaler``): not replaced once retired.
        self.elastic = False
        #: Whether this process (since its last start) said Ready: one that never did
        #: failed its startup, whatever state the parent then moved it to.
        self.was_ready = False
        self.life = Life.GONE
        self.process: Any = None
        self.conn: Any = None
        self.pid: int | None = None
        self.restarts = 0
        self.startup_deadline = 0.0
        self.kill_at: float | None = None
        #: When to signal it whatever becomes of the outcome being written (see Supervisor).
        self.signal_at: float | None = None
        #: Attempts whose outcome the parent owns (it stopped them), by fence.
        self.stopped: dict[Fence, StopReason] = {}
        #: Set when the parent asked it to go: not replaced when it exits (retired, shutdown).
        self.retiring = False
        #: Why the next replacement happens (a recycle asked by the parent), if not a death.
        self.replace_reason: str | None = None
        self.stats = Stats()  # the child's latest totals

    @property
    def devices(self) -> str:
        """The GPU UUIDs this place is pinned to, comma-separated ("" for CPU)."""
        return self.config.env.get("CUDA_VISIBLE_DEVICES", "")

    @property
    def alive(self) -> bool:
        return self.life in (Life.STARTING, Life.READY, Life.STOPPING)

    def sibling(self, config: ChildConfig, board: ChildBoard, name: str) -> ChildProcess:
        """A new place like this one (same app, devices, settings), not started, borrowed."""
        like = replace(config, env=self.config.env)
        return ChildProcess(
            like,
            board,
            self._board_handle,
            self._settings,
            name=name,
            kill_grace_s=self.kill_grace_s,
            startup_timeout_s=self.startup_timeout_s,
            borrowed=True,
        )

    def start(self) -> None:
        """Spawn a fresh child here (it reports Ready or StartupFailed on its pipe)."""
        outputs = Path(self.config.outputs)
        shutil.rmtree(outputs, ignore_errors=True)  # what a killed child left
        self.board.reset()
        parent_conn, child_conn = _spawn.Pipe(duplex=False)
        process = _spawn.Process(
            target=child_main,
            args=(self.config, child_conn, self._board_handle, self._settings),
            name=f"jobcord-{self.name}",
        )
        try:
            _spawner.submit(process.start).result()
        except BaseException:
            parent_conn.close()  # no descriptor left behind by a spawn that failed
            child_conn.close()
            raise
        child_conn.close()
        self.process, self.conn, self.pid = process, parent_conn, process.pid
        self.life = Life.STARTING
        self.was_ready = False
        self.startup_deadline = time.monotonic() + self.startup_timeout_s
        self.kill_at = None
        self.signal_at = None
        self.stopped = {}
        self.stats = Stats()

    def signal_stop(self) -> None:
        """SIGTERM now (a job may see ctx.cancelled), SIGKILL at ``kill_at``."""
        if self.life in (Life.STARTING, Life.READY) and self.pid is not None:
            self.life = Life.STOPPING
            self.kill_at = time.monotonic() + self.kill_grace_s
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill_now(self) -> None:
        if self.pid is not None and self.life is not Life.GONE:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def reap(self) -> int | None:
        """After the process exited: its exit code; the place is empty again."""
        code = None
        if self.process is not None:
            self.process.join(5)
            code = self.process.exitcode
            if code is not None:
                self.process.close()
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None
        self.life = Life.GONE
        self.kill_at = None
        return code
