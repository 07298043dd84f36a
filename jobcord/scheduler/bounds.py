"""Bounds on the durations and counts a caller gives: finite, in range, named when refused.

One set of types serves every door: the request options of the SDK and of the HTTP body
(``jobcord.producers.options``), the ``@app.job`` / ``@app.cord`` declarations and the retry policy.
A value past a bound is refused where it enters (a 422 or a ``ValueError`` naming the field),
never carried to a consumer that would overflow on it.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from .errors import ReservedIdempotencyKey

__all__ = [
    "MAX_TIMEOUT_S",
    "MAX_QUEUE_S",
    "MAX_DELAY_S",
    "MAX_RETRY_DELAY_S",
    "TimeoutSeconds",
    "QueueSeconds",
    "DelaySeconds",
    "RetryDelaySeconds",
    "Priority",
    "Retries",
    "Concurrency",
    "MAX_CONCURRENCY",
    "BatchSize",
    "BatchWaitMs",
    "checked",
    "MemorySize",
    "memory_size",
    "RESERVED_KEY_PREFIX",
    "InternalKey",
    "check_idempotency_key",
]

_DAY_S = 24 * 3600.0

#: A job's or cord's hard timeout (``timeout=``, ``timeout_seconds``): 7 days.
MAX_TIMEOUT_S = 7 * _DAY_S
#: ``max_time_in_queue_seconds``: 72 hours.
MAX_QUEUE_S = 3 * _DAY_S
#: ``delay_seconds``, and how far ahead ``eta`` may be: 7 days.
MAX_DELAY_S = 7 * _DAY_S
#: ``retry_initial_delay_s`` and ``retry_max_delay_s``: 1 day.
MAX_RETRY_DELAY_S = _DAY_S

TimeoutSeconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)]
QueueSeconds = Annotated[float, Field(gt=0, le=MAX_QUEUE_S, allow_inf_nan=False)]
DelaySeconds = Annotated[float, Field(ge=0, le=MAX_DELAY_S, allow_inf_nan=False)]
RetryDelaySeconds = Annotated[float, Field(ge=0, le=MAX_RETRY_DELAY_S, allow_inf_nan=False)]
Priority = Annotated[int, Field(ge=0, le=2, description="0 highest .. 2")]
Retries = Annotated[int, Field(ge=0, le=100)]
#: ``concurrency=``: requests one job process runs at once (each holds a lease and a slot
#: on the board, and an async engine's requests share one event loop).
MAX_CONCURRENCY = 256
Concurrency = Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]
#: ``max_batch_size=``: requests one call of a batched job takes at most.
BatchSize = Annotated[int, Field(ge=1, le=1024)]
#: ``batch_wait_ms=``: how long a batch waits for more after its first request (a lone
#: request is never held longer); 10 s at most, well inside a lease.
BatchWaitMs = Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)]

#: ``memory_limit=`` (a job process's memory while it runs the job): 16 MiB to 64 TiB, as
#: bytes or a size like ``"2GiB"``, ``"512MiB"``, ``"8G"`` (powers of 1024 either way).
MemorySize = Annotated[int, Field(ge=16 * 2**20, le=64 * 2**40)]
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def memory_size(name: str, value: int | str | None) -> int | None:
    """``value`` as bytes (None stays None); a ``ValueError`` naming ``name`` otherwise."""
    if value is None or isinstance(value, int):
        return checked(name, MemorySize | None, value)
    text = str(value).strip().lower().replace(" ", "")
    number = text.rstrip("bikmgt")
    unit = text[len(number) :].removesuffix("b").removesuffix("i")
    try:
        amount = float(number)
        factor = _UNITS[unit]
    except (KeyError, ValueError):
        raise ValueError(
            f"{name}: expected bytes or a size like '2GiB' or '512MiB', got {value!r}"
        ) from None
    if amount != amount or amount in (float("inf"), float("-inf")):
        raise ValueError(f"{name}: expected a finite size, got {value!r}")
    return checked(name, MemorySize, int(amount * factor))


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def checked(name: str, kind: Any, value: Any) -> Any:
    """``value`` validated as ``kind`` (one of the types above); a ``ValueError`` that names
    ``name`` when it is out of bounds."""
    try:
        return _adapter(kind).validate_python(value)
    except ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors(include_url=False))
        raise ValueError(f"{name}: {reason} (got {value!r})") from None


#: Idempotency keys beginning so are jobcord's own (cron ticks, child calls).
RESERVED_KEY_PREFIX = "jobcord-"


class InternalKey(str):
    """An idempotency key jobcord made itself; it may carry the reserved prefix."""

    __slots__ = ()


def check_idempotency_key(key: str | None, field: str = "idempotency_key") -> None:
    """Refuse a caller's key in jobcord's reserved space (``ReservedIdempotencyKey``: a
    ``ValueError``, 422 over HTTP); jobcord's own keys (:class:`InternalKey`) pass."""
    if key is None or isinstance(key, InternalKey):
        return
    if key.startswith(RESERVED_KEY_PREFIX):
        raise ReservedIdempotencyKey(field, key)
