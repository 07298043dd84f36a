"""Errors of job definitions and submissions."""

from __future__ import annotations

from storage.errors import JobcordError

__all__ = [
    "JobDefinitionError",
    "InputValidationError",
    "UnknownJob",
    "RetryableError",
    "PermanentError",
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
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        super().__init__(f"invalid input for job {job!r}: {detail}")


class UnknownJob(JobcordError, LookupError):
    http_status = 404

    def __init__(self, app: str, job: str) -> None:
        super().__init__(f"app {app!r} has no job {job!r}")
        self.app = app
        self.job = job


class RetryableError(JobcordError):
    """Raise in a job to ask for a retry (within its ``retries``), whatever its ``retry_on``."""


class PermanentError(JobcordError):
    """Raise in a job to fail the request now: it is never retried, whatever ``retry_on`` says."""
