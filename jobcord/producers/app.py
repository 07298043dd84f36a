"""App: the registry of an app's jobs, with the @job / @cord / lifecycle decorators."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from jobcord.scheduler.autoscaling import Autoscaling
from jobcord.scheduler.bounds import (
    BatchSize,
    BatchWaitMs,
    Concurrency,
    Retries,
    RetryDelaySeconds,
    TimeoutSeconds,
    checked,
    memory_size,
)
from jobcord.scheduler.cron import check_schedule
from jobcord.scheduler.errors import JobDefinitionError
from jobcord.scheduler.gpu_classes import NodeSelector
from jobcord.scheduler.jobspec import (
    JOB_NAME,
    RESERVED_JOB_NAMES,
    AppRegistry,
    Hook,
    JobSpec,
    checked_version,
)
from jobcord.scheduler.retry_policy import RetryPolicy
from jobcord.scheduler.signatures import analyse

from .client import Client
from .functions import RemoteFunction

__all__ = ["App"]


def _batching(
    max_batch_size: int,
    batch_wait_ms: float,
    concurrency: int,
    *,
    upload: bool = False,
    stream: bool = False,
) -> dict[str, Any]:
    """The JobSpec fields of a batching declaration, checked."""
    size = checked("max_batch_size", BatchSize, max_batch_size)
    wait_ms = checked("batch_wait_ms", BatchWaitMs, batch_wait_ms)
    if size > 1:
        clash = (
            "concurrency"
            if concurrency > 1
            else "upload"
            if upload
            else "stream"
            if stream
            else None
        )
        if clash:
            raise ValueError(f"max_batch_size > 1 cannot be combined with {clash}")
    return {"max_batch_size": size, "batch_wait_s": wait_ms / 1000}


class App(AppRegistry):
    """``app = App("demo")``; decorate jobs with ``@app.job(...)``."""

    def __init__(
        self,
        name: str,
        *,
        client: Client | None = None,
        autoscaling: Autoscaling | None = None,
    ) -> None:
        """``autoscaling``: replicas by demand, between its min (0: scale to zero) and max
        on all hosts, when a worker runs this app with others or with ``--autoscale``."""
        super().__init__(name)
        self.client = client
        _check_autoscaling(autoscaling)
        self.autoscaling = autoscaling

    def job(
        self,
        *,
        node_selector: NodeSelector | None = None,
        timeout: float | None = None,
        retries: int = 0,
        retry_initial_delay_s: float = 1.0,
        retry_max_delay_s: float = 60.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        upload: bool = False,
        schedule: str | None = None,
        schedule_input: dict[str, Any] | None = None,
        name: str | None = None,
        concurrency: int = 1,
        max_batch_size: int = 1,
        batch_wait_ms: float = 0.0,
        autoscaling: Autoscaling | None = None,
        memory_limit: int | str | None = None,
        version: str | None = None,
    ) -> Callable[[Callable[..., Any]], RemoteFunction]:
        """Declare a job. ``timeout`` (s) is a hard limit: the process running it is killed.

        ``max_batch_size`` > 1 batches it: the function is written over lists
        (``def embed(texts: list[str]) -> list[list[float]]``) while callers still pass one
        item and get their own output. A consumer calls it with up to that many waiting
        requests, waiting at most ``batch_wait_ms`` after the first. Each request keeps its
        own record, retries, timeout and result; an exception *returned* in the output list
        fails that request alone, one raised fails (or retries) each by its own policy.

        ``concurrency`` > 1 lets one job process run that many of its requests at once: in
        threads for a plain function, on one event loop for an ``async def`` one (an engine
        that batches internally). Each request keeps its own lease, timeout and outcome; a
        timeout or a cancel still kills the process, and the requests that shared it go back
        to the front of their queue, uncounted.

        ``retries`` re-runs a failed attempt after an exponential, jittered delay when the
        failure is one the job marks retryable: an instance of ``retry_on`` (default: any
        ``Exception``) or a raised ``RetryableError``; never an input validation error, a
        ``PermanentError``, a timeout or a cancel. Infrastructure faults (the job's process
        dies, the result store is down) are retried on their own budgets.

        ``schedule`` (a cron expression, UTC) makes it periodic: ``jobcord scheduler`` submits
        it once per tick with ``schedule_input`` as its input.

        ``autoscaling`` gives the job replicas of its own, scaled on its own demand (it then
        waits on a queue of its own); without it the job shares the app's.

        ``memory_limit`` (bytes, or ``"2GiB"``) bounds the job process and its helpers while
        it runs this job (the worker's ``--memory-limit`` otherwise): past it the attempt
        ends ``out of memory: limit 2 GiB`` and is retried as the job's policy says.

        ``version`` (optional): part of the job's version, beside its input and output
        schemas. A request is run only by a consumer whose job has the same version, so in a
        rolling deploy old workers leave the new requests to new workers (and the other way
        round). Change it when the job's behaviour changes but not its schemas.
        """
        _check_autoscaling(autoscaling)
        memory = memory_size("memory_limit", memory_limit)
        timeout = checked("timeout", TimeoutSeconds | None, timeout)
        retries = checked("retries", Retries, retries)
        concurrency = checked("concurrency", Concurrency, concurrency)
        batch = _batching(max_batch_size, batch_wait_ms, concurrency, upload=upload)
        retry_initial_delay_s = checked(
            "retry_initial_delay_s", RetryDelaySeconds, retry_initial_delay_s
        )
        retry_max_delay_s = checked("retry_max_delay_s", RetryDelaySeconds, retry_max_delay_s)
        retry_on = retry_on if isinstance(retry_on, tuple) else (retry_on,)
        if not all(isinstance(c, type) and issubclass(c, BaseException) for c in retry_on):
            raise ValueError("retry_on must be an exception class or a tuple of them")
        if schedule is not None:
            check_schedule(schedule)
        elif schedule_input is not None:
            raise ValueError("schedule_input needs a schedule")
        policy = RetryPolicy(
            retries=retries, initial_delay_s=retry_initial_delay_s, max_delay_s=retry_max_delay_s
        )

        def decorate(fn: Callable[..., Any]) -> RemoteFunction:
            remote = self._register(
                fn,
                name=name,
                node_selector=node_selector,
                timeout_s=timeout,
                retry=policy,
                retry_on=retry_on,
                upload=upload,
                schedule=schedule,
                concurrency=concurrency,
                autoscaling=autoscaling,
                memory_limit=memory,
                version=checked_version(version),
                **batch,
            )
            if schedule is not None:  # the tick's input must be valid now, not at 3 a.m.
                bound = remote.spec.signature.bind((), schedule_input or {})
                remote.spec = self.jobs[remote.spec.name] = replace(
                    remote.spec, schedule_input=bound
                )
            return remote

        return decorate

    def cord(
        self,
        *,
        public_api_path: str,
        method: str = "POST",
        stream: bool = False,
        node_selector: NodeSelector | None = None,
        timeout: float | None = 300.0,
        name: str | None = None,
        concurrency: int = 1,
        max_batch_size: int = 1,
        batch_wait_ms: float = 0.0,
        autoscaling: Autoscaling | None = None,
        memory_limit: int | str | None = None,
        version: str | None = None,
    ) -> Callable[[Callable[..., Any]], RemoteFunction]:
        """A request/response endpoint at ``/apps/{app}{public_api_path}``, run through the
        queue on a consumer; with ``stream=True`` the function yields chunks (sent as
        server-sent events). Cords are not retried: their caller is waiting.
        ``concurrency``, ``max_batch_size``, ``batch_wait_ms``, ``autoscaling``,
        ``memory_limit``, ``version``: as for :meth:`job`."""
        _check_autoscaling(autoscaling)
        memory = memory_size("memory_limit", memory_limit)
        timeout = checked("timeout", TimeoutSeconds | None, timeout)
        concurrency = checked("concurrency", Concurrency, concurrency)
        batch = _batching(max_batch_size, batch_wait_ms, concurrency, stream=stream)
        if not public_api_path.startswith("/") or "{" in public_api_path:
            raise ValueError("public_api_path must be a fixed path starting with '/'")
        method = method.upper()
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise ValueError(f"unsupported method {method!r}")
        taken = {(s.public_api_path, s.method) for s in self.jobs.values() if s.kind == "cord"}
        if (public_api_path, method) in taken:
            raise ValueError(f"app {self.name!r} already serves {method} {public_api_path}")

        def decorate(fn: Callable[..., Any]) -> RemoteFunction:
            if stream and not inspect.isgeneratorfunction(fn):
                raise JobDefinitionError(f"cord {fn.__name__!r}: stream=True needs a generator")
            return self._register(
                fn,
                name=name,
                node_selector=node_selector,
                timeout_s=timeout,
                kind="cord",
                public_api_path=public_api_path,
                method=method,
                stream=stream,
                concurrency=concurrency,
                autoscaling=autoscaling,
                memory_limit=memory,
                version=checked_version(version),
                **batch,
            )

        return decorate

    def _register(
        self, fn: Callable[..., Any], *, name: str | None, **fields: Any
    ) -> RemoteFunction:
        job_name = name or fn.__name__
        if not JOB_NAME.fullmatch(job_name) or job_name in RESERVED_JOB_NAMES:
            raise ValueError(
                f"job name {job_name!r} must be 1-100 letters, digits, '_' or '-', and not "
                f"one of {', '.join(sorted(RESERVED_JOB_NAMES))} (names of queue lists)"
            )
        if job_name in self.jobs:
            raise ValueError(f"app {self.name!r} already has a job named {job_name!r}")
        spec = JobSpec(
            app=self.name,
            name=job_name,
            fn=fn,
            signature=analyse(
                fn,
                job_name,
                stream=fields.get("stream", False),
                batched=fields.get("max_batch_size", 1) > 1,
            ),
            **fields,
        )
        self.jobs[job_name] = spec
        return RemoteFunction(self, spec)

    def on_startup(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Run once per consumer process, on its device; the return value is kept in
        ``ctx.state[<function name>]`` for every job of that process."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.startup_hooks.append(Hook(fn.__name__, fn))
            return fn

        return decorate

    def on_shutdown(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Run once when a consumer process stops cleanly."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.shutdown_hooks.append(Hook(fn.__name__, fn))
            return fn

        return decorate


def _check_autoscaling(policy: object) -> None:
    if policy is not None and not isinstance(policy, Autoscaling):
        raise TypeError("autoscaling must be an Autoscaling(...)")
