"""What the caller sees when a remote request did not succeed."""

from __future__ import annotations

from jobcord.storage.errors import JobcordError
from jobcord.storage.records import RequestRecord
from jobcord.storage.statuses import Status

__all__ = [
    "RemoteError",
    "JobFailed",
    "JobTimedOut",
    "JobCanceled",
    "JobExpired",
    "ResultTimeout",
    "TooLarge",
    "remote_error",
]


class RemoteError(JobcordError):
    """The request ended without a result; ``record`` holds everything jobcord knows."""

    http_status = 500

    def __init__(self, record: RequestRecord) -> None:
        self.record = record
        err = record.error
        what = f"{err.type}: {err.message}" if err else "no error recorded"
        text = (
            f"request {record.request_id} ({record.app}.{record.job}) ended {record.status.value} "
            f"after {record.attempt} attempt(s): {what}"
        )
        if err and err.traceback:
            text += f"\n--- remote traceback ---\n{err.traceback.rstrip()}"
        # Not super(): in a class combined with the job's own exception (remote_error), the
        # next __init__ would be that class's, whose arguments are its own (TypeError).
        Exception.__init__(self, text)

    @property
    def request_id(self) -> str:
        return self.record.request_id


class JobFailed(RemoteError):
    pass


class JobTimedOut(RemoteError):
    pass


class JobCanceled(RemoteError):
    pass


class JobExpired(RemoteError):
    pass


class ResultTimeout(JobcordError, TimeoutError):
    """Waiting for a result took longer than the caller allowed; the request goes on."""

    http_status = 504

    def __init__(self, request_id: str, timeout_s: float | None, status: Status | None) -> None:
        super().__init__(
            f"request {request_id} not finished after {timeout_s} s (status {status}); "
            "it keeps running: poll it or wait again"
        )
        self.request_id = request_id


class TooLarge(JobcordError, ValueError):
    """An input or its metadata is over its size limit (413 over HTTP); nothing was queued."""

    http_status = 413

    def __init__(self, field: str, size: int, limit: int, setting: str) -> None:
        super().__init__(
            f"{field} is {size} bytes encoded, over the limit of {limit} bytes "
            f"(JOBCORD_MAX_{setting}_BYTES)"
        )
        self.field = field

    @classmethod
    def check(cls, field: str, size: int, limit: int, setting: str) -> None:
        if size > limit:
            raise cls(field, size, limit, setting)


_BY_STATUS = {
    Status.FAILED: JobFailed,
    Status.TIMED_OUT: JobTimedOut,
    Status.CANCELED: JobCanceled,
    Status.EXPIRED: JobExpired,
}


def remote_error(record: RequestRecord) -> RemoteError:
    """The exception for a request that did not succeed. A FAILED job's own exception class
    comes back when it can be imported here: ``except ValueError`` works across the queue
    (the class raised is a subclass of both it and :class:`JobFailed`), and the message
    carries the remote traceback, so a failure three calls deep reads as one chain."""
    kind = _BY_STATUS.get(record.status, RemoteError)
    if kind is JobFailed and record.error is not None and record.error.module:
        original = _importable(record.error.module, record.error.type)
        if original is not None:
            return _combined(original)(record)
    return kind(record)


def _importable(module: str, name: str) -> type[Exception] | None:
    import importlib

    try:
        found = getattr(importlib.import_module(module), name, None)
    except Exception:  # noqa: BLE001 - anything may go wrong importing a caller's module
        return None
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return None


_COMBINED: dict[type[Exception], type[JobFailed]] = {}


def _combined(original: type[Exception]) -> type[JobFailed]:
    """A JobFailed that is also an ``original`` (one class per original, named like it)."""
    if issubclass(original, JobFailed):
        return original
    if original not in _COMBINED:
        try:
            cls = type(original.__name__, (JobFailed, original), {"__init__": JobFailed.__init__})
            cls.__module__ = original.__module__
            cls.__qualname__ = original.__qualname__
        except TypeError:  # incompatible layouts (rare C exceptions): the generic error
            cls = JobFailed
        _COMBINED[original] = cls
    return _COMBINED[original]
