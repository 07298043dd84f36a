"""One place of a consumer: a child process, started, watched, stopped and replaced.

A place keeps its board entries and its name across the processes that hold it. Starting is
not waited on here (a model may take minutes to load): the child's ``Ready`` or
``StartupFailed`` arrives on its pipe and the supervisor's loop reads it. Stopping a job for
real is a kill of its whole tree (``jobcord.consumers.trees``: the job process and every helper it
started): SIGTERM (the job may see ``ctx.cancelled``), SIGKILL after the grace period.

Its exit is seen through a pidfd, never through a pipe: a helper forked by the job inherits
every descriptor the job process holds and would keep a pipe open after the job process died.
A place is free for the next process only once no process of the last one's tree is left.
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
from .cgroups import ChildCgroup
from .child import ChildConfig, child_main
from .containment import Keeper
from .limits import MemoryLimit
from .protocol import Fence, Stats
from .startups import StartFailures
from .trees import MARKER_ENV, ProcessTree

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
    FENCED = "fenced"  # its lease could not be renewed for a whole TTL: ended here, unwritten


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
        keeper: Keeper | None = None,
        memory_default: int | None = None,
    ) -> None:
        self.config = config
        self.keeper = keeper
        self.memory_default = memory_default
        self.board = board
        self._board_handle = board_handle
        self._settings = settings
        self.name = name
        self.kill_grace_s = kill_grace_s
        self.startup_timeout_s = startup_timeout_s
        #: Started while a job waits on its children, retired when they no longer need it.
        self.borrowed = borrowed
        #: Started by the autoscaler (``jobcord.consumers.scaler``): not replaced once retired.
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
        #: The tree of the current (or last) process, its cgroup, and its exit pidfd.
        self.tree: ProcessTree | None = None
        self.cgroup: ChildCgroup | None = None
        self.exit_fd: int | None = None
        #: The OOM kills its cgroup had counted when it started (more at its death: OOM).
        self.oom_kills_at_start = 0
        #: Why a new process is due here, once the last one's tree is gone (None: none due).
        self.pending_start: str | None = None
        self.clearing_since: float | None = None
        self.clear_next_at = 0.0  # the next look at a tree that is slow to go
        #: Every pid seen in the last tree, kept after it is gone (the GPU check reads it).
        self.last_known: set[int] = set()
        #: Start-ups of this place that failed in a row (``jobcord.consumers.startups``), and
        #: why the current process failed its start-up, once known (its exit says the rest).
        self.start_failures = StartFailures()
        self.start_error: str | None = None

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
            keeper=self.keeper,
            memory_default=self.memory_default,
        )

    def start(self) -> None:
        """Spawn a fresh child here (it reports Ready or StartupFailed on its pipe)."""
        outputs = Path(self.config.outputs)
        shutil.rmtree(outputs, ignore_errors=True)  # what a killed child left
        self.board.reset()
        if self.tree is not None:  # not cleared (a restart gave up waiting): let it go
            if self.cgroup is not None:
                self.cgroup.remove()
            if self.keeper is not None:
                self.keeper.ended(self.tree)
        marker, cgroup = self.keeper.new_tree() if self.keeper else (f"{os.getpid()}/0", None)
        launch = replace(
            self.config,
            env={**self.config.env, MARKER_ENV: marker},
            cgroup_files=cgroup.join_files() if cgroup else (),
            memory=cgroup.memory_control() if cgroup else self.config.memory,
            memory_default=self.memory_default,
        )
        parent_conn, child_conn = _spawn.Pipe(duplex=False)
        process = _spawn.Process(
            target=child_main,
            args=(launch, child_conn, self._board_handle, self._settings),
            name=f"jobcord-{self.name}",
        )
        try:
            _spawner.submit(_start_marked, process, marker).result()
        except BaseException:
            parent_conn.close()  # no descriptor left behind by a spawn that failed
            child_conn.close()
            if cgroup is not None:
                cgroup.remove()
            raise
        child_conn.close()
        pid = process.pid
        assert pid is not None  # started
        self.process, self.conn, self.pid = process, parent_conn, pid
        self.tree = ProcessTree(pid, marker)
        self.last_known = self.tree.known
        self.cgroup = cgroup
        self.oom_kills_at_start = self.oom_kills()
        self.exit_fd = _pidfd(pid)
        if self.keeper is not None:
            self.keeper.started(self.tree, cgroup)
        self.life = Life.STARTING
        self.was_ready = False
        self.startup_deadline = time.monotonic() + self.startup_timeout_s
        self.kill_at = None
        self.signal_at = None
        self.stopped = {}
        self.stats = Stats()
        self.pending_start = None
        self.clearing_since = None
        self.start_error = None

    @property
    def ready(self) -> bool:
        """Serving capacity: said Ready and not asked to go."""
        return self.life is Life.READY and not self.retiring

    @property
    def exit_handle(self) -> Any:
        """What becomes ready when the process exits: its pidfd (Linux >= 5.3), else the
        multiprocessing sentinel."""
        if self.exit_fd is not None:
            return self.exit_fd
        return self.process.sentinel if self.process is not None else None

    def oom_kills(self) -> int:
        if self.cgroup is None:
            return 0
        return MemoryLimit(self.cgroup.memory_control()).oom_kills()

    def signal_stop(self) -> None:
        """SIGTERM now to the whole tree (a job may see ctx.cancelled), SIGKILL at
        ``kill_at``."""
        if self.life in (Life.STARTING, Life.READY) and self.pid is not None:
            self.life = Life.STOPPING
            self.kill_at = time.monotonic() + self.kill_grace_s
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if self.tree is not None:
                self.tree.terminate()

    def kill_now(self) -> None:
        """SIGKILL the whole tree (the job process and every helper)."""
        if self.pid is not None and self.life is not Life.GONE:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.end_tree()

    def end_tree(self) -> None:
        """SIGKILL whatever is left of the tree: by ``cgroup.kill`` where there is one (and
        by pid as well: a v1 memory cgroup has no kill file, and a helper may sit outside
        the v2 one only if it was started before the job process joined, which it never is)."""
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.tree is not None:
            self.tree.kill()
            if self.cgroup is not None:
                from .trees import freeze_and_kill

                self.tree.known |= freeze_and_kill(
                    lambda: self.cgroup.procs() if self.cgroup else ()
                )
            self.tree.reap_orphans()

    def tree_gone(self) -> bool:
        """Whether no process of the last tree is left (then its cgroup is removed)."""
        if self.tree is None:
            return True
        if self.tree.members() or (self.cgroup is not None and self.cgroup.procs()):
            self.tree.reap_orphans()
            return False
        self.tree.reap_orphans()
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.keeper is not None:
            self.keeper.ended(self.tree)
        # Forgotten once gone: its pids may name other processes from now on.
        self.tree = self.cgroup = None
        return True

    def settle_tree(self, wait_s: float = 0.5) -> bool:
        """Kill what is left of the tree and wait (briefly) until it is gone: for a place
        that is not started again here (retired, shut down)."""
        deadline = time.monotonic() + wait_s
        while not self.tree_gone():
            if time.monotonic() >= deadline:
                log.error("a process of an ended job tree will not die", child=self.name)
                return False
            self.end_tree()
            time.sleep(0.01)
        return True

    def reap(self) -> int | None:
        """After the process exited: its exit code; its helpers are killed (they are
        orphans now), and the place is empty once :meth:`tree_gone`."""
        code = None
        if self.process is not None:
            # Polled, not joined: joining waits on the sentinel pipe, which a forked helper
            # still holds.
            deadline = time.monotonic() + 5
            while (code := self.process.exitcode) is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if code is not None:
                self.process.close()
        if self.exit_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.exit_fd)
            self.exit_fd = None
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None
        self.life = Life.GONE
        self.kill_at = None
        self.end_tree()
        return code


def _start_marked(process: Any, marker: str) -> None:
    """Start ``process`` with the marker in the environment it is exec'd with (the one
    /proc shows, and the one a helper forked without exec keeps): set just around the
    start, on the one spawner thread."""
    os.environ[MARKER_ENV] = marker
    try:
        process.start()
    finally:
        os.environ.pop(MARKER_ENV, None)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: the sentinel stands in
        return None
