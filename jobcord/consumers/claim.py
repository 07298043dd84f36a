"""An attempt a child claimed: the record's fields it runs with, read without a model.

The fetch script returns the record as it was queued; a child needs a dozen of its fields
per job, so they are read here directly (a pydantic RequestRecord costs several times more,
on every job).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

__all__ = ["Claim"]


def _number(raw: str | None) -> float | None:
    return None if raw is None or raw == "" else float(raw)


if TYPE_CHECKING:
    from jobcord.scheduler.jobspec import JobSpec


def _count(raw: str | None) -> int:
    return int(raw) if raw else 0


@dataclass(frozen=True, slots=True)
class Claim:
    token: str  # the attempt's lease token: every write it makes is fenced by it
    request_id: str
    app: str
    job: str
    attempt: int
    input: Any  # the JSON input, decoded (None for a binary one)
    input_format: str  # json | msgpack
    input_ref: str | None  # a large binary input's key in the result store
    timeout_s: float | None
    max_retries: int | None
    failures: int
    worker_losses: int
    infra_failures: int

    def timeout_under(self, spec: JobSpec | None) -> float | None:
        """Its own timeout (set at submission), else its job's."""
        if self.timeout_s is not None or spec is None:
            return self.timeout_s
        return spec.timeout_s

    @classmethod
    def from_fields(cls, token: str, fields: dict[str, str]) -> Claim:
        raw_input = fields.get("input")
        retries = fields.get("max_retries")
        return cls(
            token=token,
            request_id=fields["id"],
            app=fields["app"],
            job=fields["job"],
            attempt=int(fields["attempt"]),
            input=json.loads(raw_input) if raw_input else None,
            input_format=fields.get("input_format") or "json",
            input_ref=fields.get("input_ref") or None,
            timeout_s=_number(fields.get("timeout_s")),
            max_retries=int(retries) if retries else None,
            failures=_count(fields.get("failures")),
            worker_losses=_count(fields.get("worker_losses")),
            infra_failures=_count(fields.get("infra_failures")),
        )
