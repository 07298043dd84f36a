"""One execution core: how a job body is called and how its failure is judged.

The consumer's child process and ``run_local`` both call :func:`invoke` and
:func:`describe_failure`, and both ask :func:`next_retry_delay_s` whether a failure is
retried, so running locally can never drift from running on the queue.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .context import JobContext, running_job
from .jobspec import JobSpec
from .retry_policy import RetryPolicy, is_retryable

__all__ = ["invoke", "ainvoke", "JobFailure", "describe_failure", "next_retry_delay_s"]


def invoke(
    spec: JobSpec,
    data: Any,
    ctx: JobContext,
    *,
    fn: Callable[..., Any] | None = None,
    on_item: Callable[[Any], None] | None = None,
) -> Any:
    """Validate ``data`` into typed arguments, call the job (``fn``: a stand-in with the same
    inputs) with its context, await a coroutine, and drain a generator: each item goes to
    ``on_item`` (a streaming cord; returns None) or, without one, into a list. A batched job
    is called with a batch of one (a consumer batches through ``jobcord.consumers.batches``)."""
    kwargs = spec.signature.typed_kwargs(data)
    body = spec.fn if fn is None else fn
    if spec.batched and body is spec.fn:
        kwargs = {name: [value] for name, value in kwargs.items()}
    param = spec.signature.context_param
    # A stand-in gets the context only if it asks for it by the same name.
    if param and (body is spec.fn or param in inspect.signature(body).parameters):
        kwargs[param] = ctx
    with running_job(ctx):
        value = body(**kwargs)
        if inspect.iscoroutine(value):
            value = asyncio.run(value)
        if inspect.isgenerator(value):
            if on_item is None:
                return list(value)
            for item in value:
                on_item(item)
            return None
    if spec.batched and body is spec.fn:
        [value] = value  # one input, one output
        if isinstance(value, BaseException):
            raise value
    return value


async def ainvoke(spec: JobSpec, data: Any, ctx: JobContext) -> Any:
    """:func:`invoke` for an ``async def`` job that shares its process's event loop with
    other requests (``concurrency``): awaited here, never run in a loop of its own."""
    kwargs = spec.signature.typed_kwargs(data)
    if spec.signature.context_param:
        kwargs[spec.signature.context_param] = ctx
    with running_job(ctx):
        value = spec.fn(**kwargs)
        if inspect.iscoroutine(value):
            value = await value
    return value


@dataclass(frozen=True)
class JobFailure:
    """A job's exception as data: what callers see, and whether a retry may fix it."""

    error_type: str
    message: str
    traceback: str
    retryable: bool
    error_module: str


def describe_failure(exc: BaseException, spec: JobSpec | None) -> JobFailure:
    """``exc`` as data (its own traceback: raised, or returned by a batched job)."""
    kind = type(exc)
    return JobFailure(
        error_type=kind.__name__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        retryable=spec is not None and is_retryable(exc, spec.retry_on),
        error_module=kind.__module__,
    )


def next_retry_delay_s(
    policy: RetryPolicy | None, max_retries: int | None, retryable: bool, failures: int
) -> float | None:
    """The delay before re-running after the job's ``failures``-th failure (counting this
    one), or None when it must not be retried. ``max_retries`` (the request's own) overrides
    the job's ``retries``."""
    if policy is None or not retryable:
        return None
    if max_retries is not None:
        policy = policy.model_copy(update={"retries": max_retries})
    return policy.delay_s(failures) if policy.should_retry(failures) else None
