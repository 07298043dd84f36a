"""A job's own exception class comes back to its caller, whatever its constructor takes."""

from __future__ import annotations

import pytest

from jobcord.producers.errors import JobFailed, ResultTimeout, remote_error
from jobcord.storage.records import RequestRecord


class NeedsTwo(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


def _failed(module: str, kind: str) -> RequestRecord:
    return RequestRecord.model_validate(
        {
            "request_id": "a" * 32,
            "app": "t",
            "job": "j",
            "queue": "q",
            "status": "FAILED",
            "created_at": 0.0,
            "error": {"type": kind, "message": "boom", "module": module},
        }
    )


@pytest.mark.parametrize(
    ("module", "kind", "base"),
    [
        (__name__, "NeedsTwo", NeedsTwo),  # a constructor with arguments of its own
        (
            "jobcord.producers.errors",
            "ResultTimeout",
            ResultTimeout,
        ),  # a child's wait that timed out
        ("builtins", "ValueError", ValueError),
    ],
)
def test_the_jobs_exception_class_comes_back(module, kind, base):
    err = remote_error(_failed(module, kind))
    assert isinstance(err, JobFailed) and isinstance(err, base)
    assert "boom" in str(err) and err.request_id == "a" * 32
