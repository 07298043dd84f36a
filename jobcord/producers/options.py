"""The one model of a request's options: the SDK's ``SubmitOptions`` and the HTTP body.

``RequestOptions`` holds what a caller may set besides the input; the gateway's body model is
``RequestOptions`` plus ``input`` (``gateway.bodies``) and ``SubmitOptions`` adds what
only the SDK carries (the idempotency key, which HTTP sends as a header, and the parent).
Every duration is a bounded type of ``jobcord.scheduler.bounds``: finite, in range, and refused with
the field's name (a 422 over HTTP, a ``ValueError`` in Python).
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from jobcord.scheduler.bounds import (
    MAX_DELAY_S,
    DelaySeconds,
    Priority,
    QueueSeconds,
    Retries,
    TimeoutSeconds,
)

__all__ = ["CompletionTarget", "RequestOptions", "SubmitOptions", "delay_until"]

_AWARE = TypeAdapter(AwareDatetime)


def _aware_eta(value: Any) -> datetime | None:
    """``eta`` as an aware datetime: a number is epoch seconds; a naive time is refused."""
    if value is None:
        return None
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("eta must be timezone-aware (e.g. datetime.now(timezone.utc))")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError("eta must be a finite number of epoch seconds")
        _check_ahead(value)
        return datetime.fromtimestamp(max(0.0, value), UTC)  # the past runs now
    try:
        return _AWARE.validate_python(value)
    except ValidationError as exc:
        raise ValueError(f"eta: {exc.errors()[0]['msg']}") from None


def _check_ahead(at: float) -> None:
    ahead = at - time.time()
    if ahead > MAX_DELAY_S:
        raise ValueError(
            f"eta is {ahead:.3g} s ahead; at most {MAX_DELAY_S:.0f} s (7 days) allowed"
        )


#: What a completion message may carry besides the request (args, kwargs, options), as JSON.
MAX_TARGET_BYTES = 16 * 1024
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$"


def _from_dramatiq(value: Any) -> Any:
    """A dramatiq ``Actor`` or ``Message`` as the target it names (read by attribute, so
    this module never imports dramatiq)."""
    if isinstance(value, dict | CompletionTarget) or value is None:
        return value
    actor, queue = getattr(value, "actor_name", None), getattr(value, "queue_name", None)
    if not isinstance(actor, str) or not isinstance(queue, str):
        raise ValueError("on_complete must be a dramatiq actor, actor.message(...), or a dict")
    return {
        "actor": actor,
        "queue": queue,
        "args": list(getattr(value, "args", ())),
        "kwargs": dict(getattr(value, "kwargs", {})),
        "options": dict(getattr(value, "options", {})),
    }


class CompletionTarget(BaseModel):
    """A dramatiq actor that gets the finished request as a message on the team's broker:
    ``actor(*args, request, **kwargs)``, like the next step of a dramatiq pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor: str = Field(pattern=_NAME, description="The actor's name on the broker.")
    queue: str = Field(default="default", pattern=_NAME, description="Its queue.")
    args: list[Any] = Field(default_factory=list, description="Before the request.")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(
        default_factory=dict, description="dramatiq message options (e.g. max_retries)."
    )

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if any(name.startswith("jobcord_") for name in self.options):
            raise ValueError("on_complete.options: names beginning jobcord_ are jobcord's own")
        try:
            size = len(json.dumps([self.args, self.kwargs, self.options]).encode())
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"on_complete: its args, kwargs and options must be JSON: {exc}"
            ) from None
        if size > MAX_TARGET_BYTES:
            raise ValueError(
                f"on_complete: args, kwargs and options are {size} bytes of JSON; at most "
                f"{MAX_TARGET_BYTES} allowed"
            )
        return self


class RequestOptions(BaseModel):
    """How a request runs, apart from its input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_endpoint: str | None = Field(default=None, max_length=2048)
    priority: Priority | None = Field(default=None, description="0 highest .. 2")
    max_time_in_queue_seconds: QueueSeconds | None = Field(
        default=None, description="Expire if not started this long after it is runnable."
    )
    timeout_seconds: TimeoutSeconds | None = Field(
        default=None, description="Hard limit; at most the job's own timeout."
    )
    delay_seconds: DelaySeconds | None = Field(default=None, description="Run no sooner.")
    eta: Annotated[datetime | float | None, BeforeValidator(_aware_eta)] = Field(
        default=None,
        description="Run at (ISO 8601 with zone, or epoch seconds); not with delay_seconds",
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="Kept on the request (JOBCORD_MAX_METADATA_BYTES at most)."
    )
    retries: Retries | None = Field(default=None, description="Overrides the job's retries")
    on_complete: Annotated[CompletionTarget | None, BeforeValidator(_from_dramatiq)] = Field(
        default=None,
        description="A dramatiq actor to send the finished request to (instead of a webhook).",
    )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.on_complete is not None and self.webhook_endpoint is not None:
            raise ValueError("give either webhook_endpoint or on_complete, not both")
        if self.eta is not None:
            if self.delay_seconds is not None:
                raise ValueError("give either eta or delay_seconds, not both")
            _check_ahead(_epoch(self.eta))
        return self

    def start_delay_s(self) -> float | None:
        """Seconds to hold the request back: ``delay_seconds``, or until ``eta`` (0 if past)
        by this host's clock (a submission holds an ``eta`` back by Redis's: ``start_at``)."""
        if self.eta is None:
            return self.delay_seconds
        return delay_until(self.eta)

    def start_at(self) -> float | None:
        """``eta`` in epoch seconds, None without one: the submit script holds the request
        back until then on Redis's clock, so a client whose clock is off still starts it on
        time."""
        return None if self.eta is None else _epoch(self.eta)


def _epoch(eta: datetime | float) -> float:
    return eta.timestamp() if isinstance(eta, datetime) else eta


class SubmitOptions(RequestOptions):
    """What the SDK submits with; ``Client.submit`` takes it, whatever the client."""

    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    #: The request whose running job submits this one (set by calls inside a job).
    parent_id: str | None = None

    def request_options(self) -> dict[str, Any]:
        """The fields an HTTP body carries (as JSON), without the unset ones."""
        return self.model_dump(
            mode="json", exclude_none=True, include=set(RequestOptions.model_fields)
        )


def delay_until(eta: datetime | float, delay_seconds: float | None = None) -> float:
    """The delay before ``eta`` (an aware datetime or epoch seconds) by this host's clock; 0
    when it has passed. (``async_run_remote(eta=...)`` does not use it: Redis's clock decides
    when an ``eta`` has come.)"""
    if delay_seconds is not None:
        raise ValueError("give either eta or delay_seconds, not both")
    if isinstance(eta, datetime):
        if eta.tzinfo is None:
            raise ValueError("eta must be timezone-aware (e.g. datetime.now(timezone.utc))")
        at = eta.timestamp()
    else:
        at = float(eta)
    return max(0.0, at - time.time())
