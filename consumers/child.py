"""The child process that runs job bodies: pinned, warm, and killable.

It is started with the ``spawn`` method (never fork after CUDA init), sets its device
environment before importing the app, runs the startup hooks once, then executes one task at a
time sent by its parent over a pipe. The parent kills it to enforce timeouts and cancels.
Messages are the typed ones of :mod:`consumers.protocol`; every reply about a task carries that
task's fence ``(request_id, attempt)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .protocol import (
    ChildMessage,
    Chunk,
    Done,
    Failed,
    Fence,
    Progress,
    Ready,
    RunTask,
    StartupFailed,
    StopChild,
    Task,
    Waiting,
)

__all__ = ["Task", "child_main"]


def _die_with_parent() -> None:
    """SIGKILL us when the parent dies, so a dead consumer never leaves a GPU held."""
    # Not Linux: no prctl, and the parent's exit handling still stops us.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def child_main(app_ref: str, conn: Connection, env: dict[str, str], log_format: str) -> None:
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    os.environ.update(env)  # CUDA_VISIBLE_DEVICES & co. before anything can import CUDA

    from scheduler.context import JobContext
    from scheduler.invoke import describe_failure, invoke
    from scheduler.jobspec import JobSpec
    from scheduler.loader import load_app
    from scheduler.outputs import JSON_TYPE, encode_output
    from storage.logs import configure_logging

    from .cuda_errors import poisons_cuda_context
    from .finish_here import ChildFinisher

    configure_logging(log_format)
    finisher = ChildFinisher()
    send_lock = threading.Lock()

    def send(msg: ChildMessage) -> None:
        with send_lock:
            conn.send(msg)

    current: list[JobContext] = []

    def on_sigterm(_sig: int, _frame: Any) -> None:
        # A stop is coming (cancel or timeout): let cooperative jobs see ctx.cancelled.
        for ctx in current:
            ctx._cancelled.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which drains

    try:
        app = load_app(app_ref)
        state = {hook.name: hook.fn() for hook in app.startup_hooks}
    except BaseException:
        send(StartupFailed(traceback.format_exc()))
        return
    send(Ready(os.getpid()))

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if isinstance(msg, StopChild) or not isinstance(msg, RunTask):
            break  # anything but a task is a stop: the parent replaces a confused child
        task: Task = msg.task
        fence = task.fence
        ctx = JobContext(
            request_id=task.request_id,
            attempt=task.attempt,
            app=app.name,
            job=task.job,
            output_dir=Path(task.output_dir),
            state=state,
            devices=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            _report=lambda f, m, fence=fence: send(Progress(fence, f, m)),  # type: ignore[misc]
            _waiting=lambda on, fence=fence: send(Waiting(fence, on)),  # type: ignore[misc]
        )
        current[:] = [ctx]
        spec: JobSpec | None = None
        try:
            spec = app.spec(task.job)
            signature = spec.signature
            if spec.stream:

                def relay(item: Any, fence: Fence = fence, signature: Any = signature) -> None:
                    send(Chunk(fence, encode_output(signature, item).data))

                invoke(spec, task.input, ctx, on_item=relay)
                send(Done(fence, JSON_TYPE, b"null"))
            else:
                encoded = encode_output(signature, invoke(spec, task.input, ctx))
                ended = finisher.try_finish(task, encoded)
                send(ended or Done(fence, encoded.content_type, encoded.data))
        except BaseException as exc:  # the job's failure is data for the parent
            f = describe_failure(exc, spec)
            poisoned = poisons_cuda_context(exc)
            send(
                Failed(
                    fence,
                    f.error_type,
                    f.message,
                    f.traceback,
                    f.retryable,
                    poisoned,
                    f.error_module,
                )
            )
        finally:
            current.clear()

    for hook in app.shutdown_hooks:
        try:
            hook.fn()
        except Exception:
            traceback.print_exc()
