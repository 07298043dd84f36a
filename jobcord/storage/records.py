"""The request record: the Redis hash parsed into a typed model, and its public view."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from .statuses import Status, WebhookStatus

__all__ = ["RequestRecord", "ResultFile", "RequestError", "AttemptRecord"]


#: Record fields stored as JSON text in the Redis hash.
JSON_FIELDS = (
    "input",
    "output",
    "result",
    "files",
    "error",
    "metadata",
    "attempts",
    "on_complete",
)


class RequestError(BaseModel):
    """Why a request did not succeed, as the consumer saw it."""

    type: str
    message: str
    traceback: str | None = None
    module: str | None = Field(default=None, description="Where the error's class lives.")


class AttemptRecord(BaseModel):
    """One attempt that ran: where, when, and how it ended."""

    attempt: int
    outcome: str = Field(description="A final status, or RETRY when the request was requeued.")
    reason: str | None = None
    error: str | None = Field(default=None, description="The error's type, when it failed.")
    worker: str | None = None
    device: str | None = None
    started_at: float | None = None
    ended_at: float | None = None


class ResultFile(BaseModel):
    """One stored object of a result: the output blob or a file the job wrote."""

    name: str
    key: str
    size: int
    content_type: str = "application/octet-stream"
    url: str | None = None


class RequestRecord(BaseModel):
    request_id: str
    app: str
    job: str
    queue: str
    status: Status
    attempt: int = 1
    max_retries: int | None = None
    failures: int = 0
    worker_losses: int = 0
    infra_failures: int = 0
    priority: int = 1
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    retry_at: float | None = Field(
        default=None, description="When a waiting retry or delayed request becomes runnable."
    )
    timeout_s: float | None = None
    queue_deadline: float | None = None
    idempotency_key: str | None = None
    input: Any = None
    input_format: str = Field(default="json", description="json, or msgpack (binary input).")
    input_ref: str | None = Field(
        default=None, description="Result-store key of a large binary input."
    )
    output: Any = None
    result: ResultFile | None = Field(default=None, description="The output when stored apart.")
    files: list[ResultFile] = Field(default_factory=list)
    attempts: list[AttemptRecord] = Field(
        default_factory=list, description="Every attempt that started, oldest first."
    )
    error: RequestError | None = None
    worker: str | None = None
    device: str | None = None
    cancel_requested: bool = False
    parent_id: str | None = Field(default=None, description="The request whose job made this.")
    job_version: str | None = Field(
        default=None,
        description="The job version it needs (a hash of its schemas and declared version): "
        "only consumers running that version take it.",
    )
    child_count: int = Field(default=0, description="Requests this one's job made.")
    children: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Requests this one's job made, in order, with their status (and theirs).",
    )
    webhook_endpoint: str | None = None
    webhook_status: WebhookStatus = WebhookStatus.NONE
    webhook_attempts: int = 0
    webhook_last_status_code: int | None = None
    webhook_last_ms: float | None = None
    webhook_last_error: str | None = None
    webhook_delivered_at: float | None = None
    on_complete: dict[str, Any] | None = Field(
        default=None,
        description="The dramatiq actor the finished request is sent to; webhook_status "
        "tells that delivery (DELIVERED: on the team's broker).",
    )
    on_complete_processed_at: float | None = Field(
        default=None, description="When that actor's run, bridged by jobcord, succeeded."
    )
    metadata: dict[str, Any] | None = None
    progress: float | None = None
    progress_message: str | None = None
    batch_size: int | None = Field(
        default=None, description="Batched jobs: how many requests the call that ran it took."
    )
    batch_position: int | None = Field(
        default=None, description="Batched jobs: its place in that call (0 first)."
    )
    waiting_reason: str | None = Field(
        default=None,
        description="Why a queued request may never start (no live consumer serves its queue).",
    )

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> RequestRecord:
        data: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
        data["request_id"] = data.pop("id")
        for name in JSON_FIELDS:
            if name in data:
                data[name] = json.loads(data[name])
        data["cancel_requested"] = data.get("cancel_requested") == "1"
        record = cls.model_validate(data)
        record._add_final_attempt()
        return record

    def _add_final_attempt(self) -> None:
        """The attempt that ended the request is not in the stored log (the finish script
        leaves it out, to spare a JSON rewrite on every finish): it is made here from the
        record's own fields. Only an attempt that started has one; records written before
        0.2 may hold it already."""
        if not self.status.is_terminal or self.started_at is None:
            return
        last = self.attempts[-1] if self.attempts else None
        if last is not None and last.attempt == self.attempt and last.outcome == self.status:
            return
        self.attempts.append(
            AttemptRecord(
                attempt=self.attempt,
                outcome=self.status.value,
                # A success's record may still hold an earlier attempt's error.
                error=self.error.type if self.error and self.status != "SUCCEEDED" else None,
                worker=self.worker,
                device=self.device,
                started_at=self.started_at,
                ended_at=self.finished_at,
            )
        )

    def public(self) -> dict[str, Any]:
        """The request as clients see it (status calls, webhooks): no internal lease state."""
        return self.model_dump(mode="json", exclude={"input"})

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal
