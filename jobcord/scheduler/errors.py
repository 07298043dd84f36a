"""Errors of job definitions and submissions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from jobcord.storage.errors import JobcordError

__all__ = [
    "JobDefinitionError",
    "InputValidationError",
    "OutputValidationError",
    "UnknownJob",
    "RetryableError",
    "PermanentError",
    "ReservedIdempotencyKey",
]


class JobDefinitionError(JobcordError, TypeError):
    """A decorated function cannot be a job as written."""

    http_status = 500


class InputValidationError(JobcordError, ValueError):
    """The input does not match the job's parameters; nothing was queued."""

    http_status = 422

    def __init__(self, job: str, problems: list[dict[str, str]]) -> None:
        self.job = job
        self.problems = problems
        super().__init__(f"invalid input for job {job!r}: {_detail(problems)}")


class OutputValidationError(JobcordError, TypeError):
    """The job returned a value that does not match its return annotation: the request
    fails (never retried: the same code returns the same kind of value) instead of storing
    an output its callers cannot read as the type they were promised."""

    def __init__(self, job: str, problems: list[dict[str, str]]) -> None:
        self.job = job
        self.problems = problems
        super().__init__(
            f"job {job!r} returned a value that does not match its return type: "
            + _detail(problems)
        )


def _detail(problems: list[dict[str, str]]) -> str:
    return "; ".join(f"{p['field']}: {p['message']}" for p in problems)


class UnknownJob(JobcordError, LookupError):
    http_status = 404

    def __init__(self, app: str, job: str, known: Iterable[str] = ()) -> None:
        close = difflib.get_close_matches(job, list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"app {app!r} has no job {job!r}{hint}")
        self.app = app
        self.job = job


class RetryableError(JobcordError):
    """Raise in a job to ask for a retry (within its ``retries``), whatever its ``retry_on``."""


class PermanentError(JobcordError):
    """Raise in a job to fail the request now: it is never retried, whatever ``retry_on`` says."""


class ReservedIdempotencyKey(JobcordError, ValueError):
    """A caller gave an idempotency key that begins ``jobcord-``: those are jobcord's own
    (cron ticks, child calls), so that no caller can take one first."""

    http_status = 422

    def __init__(self, field: str, key: str) -> None:
        super().__init__(
            f"{field} {key!r} is reserved: keys beginning 'jobcord-' are jobcord's own "
            "(cron ticks, child calls); choose another"
        )
        self.key = key
