"""Retry policy: exponential backoff with full jitter, capped."""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .bounds import Retries, RetryDelaySeconds
from .errors import (
    InputValidationError,
    OutputValidationError,
    PermanentError,
    RetryableError,
    UnknownJob,
)

__all__ = ["RetryPolicy", "is_retryable"]


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    retries: Retries = Field(default=0, description="Re-runs after a failure.")
    initial_delay_s: RetryDelaySeconds = 1.0
    max_delay_s: RetryDelaySeconds = 60.0

    def should_retry(self, failures_so_far: int) -> bool:
        """``failures_so_far`` counts the failure that just happened."""
        return failures_so_far <= self.retries

    def delay_s(self, failures_so_far: int) -> float:
        """Delay before the next attempt: uniform in [ceiling/2, ceiling] (never zero-spins)."""
        ceiling = min(self.max_delay_s, self.initial_delay_s * 2 ** max(0, failures_so_far - 1))
        return random.uniform(ceiling / 2, ceiling)


#: Failures that a retry cannot fix: the input (or the returned value) is wrong, the job
#: does not exist here, or the job said so.
_NEVER_RETRIED = (
    InputValidationError,
    OutputValidationError,
    UnknownJob,
    ValidationError,
    PermanentError,
)


def is_retryable(exc: BaseException, retry_on: tuple[type[BaseException], ...]) -> bool:
    """Whether a job's own failure may be retried: the job marks it (``retry_on``, by default
    any ``Exception``, or :class:`RetryableError`); validation errors and
    :class:`PermanentError` never are."""
    if isinstance(exc, RetryableError):
        return True
    if isinstance(exc, _NEVER_RETRIED):
        return False
    return isinstance(exc, retry_on)
