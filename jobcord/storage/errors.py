"""The root exception and the storage layer's errors.

Every jobcord error subclasses :class:`JobcordError`; the HTTP gateway maps each class to one
status code (``http_status``) so that a user always gets a clear, named 4xx.
"""

from __future__ import annotations

import redis

__all__ = [
    "JobcordError",
    "ConfigurationError",
    "RequestNotFound",
    "IdempotencyConflict",
    "ResultStoreError",
    "NotRetryable",
    "TooManyRequests",
    "RedisUnavailable",
    "NotAcknowledged",
    "refuses_writes",
]

#: Replies by which a reachable Redis refuses a write for now: out of memory (maxmemory with
#: noeviction), a replica (read-only, e.g. mid-failover), a disk that cannot persist, too few
#: replicas (min-replicas-to-write).
_REFUSALS = ("OOM ", "READONLY ", "MISCONF ", "NOREPLICAS ")
#: The same refusals met inside a script on Redis 6, wrapped in "ERR Error running script".
_IN_SCRIPT = ("OOM command not allowed", "-READONLY ", "-MISCONF ", "-NOREPLICAS ")


def refuses_writes(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing a write for now (it may take it again later)."""
    if not isinstance(exc, redis.ResponseError):
        return False
    text = str(exc)
    return (
        text.startswith(_REFUSALS)
        or any(r in text for r in _IN_SCRIPT)
        or isinstance(exc, (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError))
    )


class JobcordError(Exception):
    """Root of every error jobcord raises on purpose."""

    http_status = 500


class ConfigurationError(JobcordError):
    http_status = 500


class RequestNotFound(JobcordError):
    http_status = 404

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no request with id {request_id!r}")
        self.request_id = request_id


class IdempotencyConflict(JobcordError):
    """The idempotency key was used before with a different input."""

    http_status = 422

    def __init__(self, key: str, request_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for request {request_id} "
            "with a different input; use a new key for a new input"
        )
        self.key = key
        self.request_id = request_id


class ResultStoreError(JobcordError):
    http_status = 502


class NotRetryable(JobcordError):
    """A retry was asked for a request that succeeded or has not ended."""

    http_status = 409


class TooManyRequests(JobcordError):
    """A limit said no for now (the app's in-flight cap, a key's rate): try again later."""

    http_status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RedisUnavailable(JobcordError):
    """Redis cannot take the request now (unreachable, or refusing writes): nothing was
    written; the same call (with the same idempotency key) may be tried again."""

    http_status = 503


class NotAcknowledged(RedisUnavailable):
    """A submit the primary took but too few replicas (or no AOF) confirmed in time: a
    failover now could erase it, so no request id is given. Retry with the same idempotency
    key: if the first one survives it is the one returned, never a second request."""
