"""The child process that runs job bodies: pinned, warm, and killable.

It is started with the ``spawn`` method (never fork after CUDA init), sets its device
environment before importing the app, runs the startup hooks once, then executes one task at a
time sent by its parent over a pipe. The parent kills it to enforce timeouts and cancels.

Messages child -> parent: ("ready", pid) | ("startup_failed", text) | ("progress", f, msg) |
("chunk", data) (streaming cords) |
("ok", content_type, data) | ("error", type, message, traceback, retryable, poisoned).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import os
import signal
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = ["Task", "child_main"]


@dataclass(frozen=True)
class Task:
    request_id: str
    attempt: int
    job: str
    input: dict[str, Any]
    output_dir: str


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

    from scheduler.context import JobContext, running_job
    from scheduler.jobspec import JobSpec
    from scheduler.loader import load_app
    from scheduler.outputs import JSON_TYPE, encode_output
    from scheduler.retry_policy import is_retryable
    from storage.logs import configure_logging

    from .cuda_errors import poisons_cuda_context

    configure_logging(log_format)
    send_lock = threading.Lock()

    def send(*msg: Any) -> None:
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
        send("startup_failed", traceback.format_exc())
        return
    send("ready", os.getpid())

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "stop":
            break
        task: Task = msg[1]
        ctx = JobContext(
            request_id=task.request_id,
            attempt=task.attempt,
            app=app.name,
            job=task.job,
            output_dir=Path(task.output_dir),
            state=state,
            devices=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            _report=lambda f, m: send("progress", f, m),
            _waiting=lambda on: send("waiting", on),
        )
        current[:] = [ctx]
        spec: JobSpec | None = None
        try:
            spec = app.spec(task.job)
            kwargs = spec.signature.typed_kwargs(task.input)
            if spec.signature.context_param:
                kwargs[spec.signature.context_param] = ctx
            with running_job(ctx):
                if spec.stream:
                    for item in spec.fn(**kwargs):
                        send("chunk", encode_output(spec.signature, item).data)
                    send("ok", JSON_TYPE, b"null")
                else:
                    value = spec.fn(**kwargs)
                    if inspect.iscoroutine(value):  # async def jobs get an event loop
                        value = asyncio.run(value)
                    encoded = encode_output(spec.signature, value)
                    send("ok", encoded.content_type, encoded.data)
        except BaseException as exc:  # the job's failure is data for the parent
            retryable = spec is not None and is_retryable(exc, spec.retry_on)
            poisoned = poisons_cuda_context(exc)
            tb = traceback.format_exc()
            kind = type(exc)
            send("error", kind.__name__, str(exc), tb, retryable, poisoned, kind.__module__)
        finally:
            current.clear()

    for hook in app.shutdown_hooks:
        try:
            hook.fn()
        except Exception:
            traceback.print_exc()
