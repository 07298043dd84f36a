"""A child process: pinned, warm, killable, and a consumer in its own right.

It is started with the ``spawn`` method (never fork after CUDA init), sets its device
environment before importing the app, runs the startup hooks once, then fetches, claims,
runs and ends attempts itself (``jobcord.consumers.attempts``), showing each on the shared board so
its parent can renew the lease, enforce the timeout and stop it. Its parent kills it to stop
a job for real; it asks it to stop taking work through the board.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .cgroups import MemoryControl
from .devices import Device
from .fetcher import QueuePlan
from .protocol import ChildMessage, Ready, StartupFailed

__all__ = ["ChildConfig", "child_main", "EXIT_RECYCLE", "EXIT_POISONED"]

#: Exit codes by which a child tells its parent why it left (0: it was asked to stop).
EXIT_RECYCLE = 3  # it ran its quota of jobs (--max-jobs-per-child)
EXIT_POISONED = 4  # a job left its CUDA context unusable


@dataclass(frozen=True)
class ChildConfig:
    """What a child needs besides its app: where it sits and what it serves."""

    app_ref: str
    env: dict[str, str]  # CUDA_VISIBLE_DEVICES & co., set before the app is imported
    log_format: str
    worker: str  # the consumer's id, written on every attempt it claims
    place: int  # its place on the board
    wake_name: str  # its own wake list (the parent pushes to it)
    plan: QueuePlan
    outputs: str  # the directory under which its jobs' output directories are made
    max_jobs: int = 0  # exit after this many jobs (0: never)
    recycle_memory_fraction: float = 0.0  # exit when a job leaves this much of a GPU held
    devices: tuple[Device, ...] = ()  # the GPUs it is pinned to
    #: Set per start by ``jobcord.consumers.children``: the cgroup.procs files it joins first thing,
    #: where it sets its memory limit, and the limit for jobs that set none.
    cgroup_files: tuple[str, ...] = ()
    memory: MemoryControl = MemoryControl("rlimit")
    memory_default: int | None = None


def _die_with_parent() -> None:
    """SIGKILL us when the parent dies, so a dead consumer never leaves a GPU held."""
    # Not Linux: no prctl, and the parent's exit handling still stops us.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _contain(config: ChildConfig) -> None:
    """Before any code of the app runs (and can start a helper): a session of our own, so
    the consumer finds and signals every descendant, and our cgroups."""
    with contextlib.suppress(OSError):  # already a session leader: nothing to do
        os.setsid()
    for path in config.cgroup_files:
        Path(path).write_text(str(os.getpid()))


def child_main(
    config: ChildConfig, conn: Connection, board_handle: tuple[Any, Any, int], settings: Any
) -> None:
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    try:
        _contain(config)
    except OSError as exc:
        conn.send(StartupFailed(f"could not join the job process's cgroup: {exc}"))
        return
    os.environ.update(config.env)  # CUDA_VISIBLE_DEVICES & co. before anything can import CUDA

    from jobcord.scheduler.loader import load_app
    from jobcord.storage.logs import configure_logging

    from .attempts import ChildConsumer
    from .board import child_board

    configure_logging(config.log_format, settings.log_level)
    send_lock = threading.Lock()

    def send(msg: ChildMessage) -> None:
        with send_lock:
            conn.send(msg)

    try:
        app = load_app(config.app_ref)
        state = {hook.name: hook.fn() for hook in app.startup_hooks}
    except BaseException:
        send(StartupFailed(traceback.format_exc()))
        return
    consumer = ChildConsumer(
        app, state, child_board(board_handle, config.place), config, settings, send
    )
    # A stop is coming (a cancel or a timeout of ours, or the consumer shutting down): take
    # no more work, and let cooperative jobs see ctx.cancelled.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: consumer.stopping())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which drains
    Path(config.outputs).mkdir(parents=True, exist_ok=True)
    send(Ready(os.getpid()))
    code = consumer.run()
    if code:  # replaced as it is (a poisoned context), as the parent would kill it
        os._exit(code)
    for hook in app.shutdown_hooks:
        try:
            hook.fn()
        except Exception:
            traceback.print_exc()
