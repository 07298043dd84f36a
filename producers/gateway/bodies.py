"""Request bodies of the job routes, built per job so that OpenAPI shows each input schema."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from scheduler.jobspec import JobSpec

__all__ = ["job_body_model", "Accepted"]


class Accepted(BaseModel):
    request_id: str
    status: str
    created: bool = True  # False: an earlier request with the same Idempotency-Key and body


def job_body_model(spec: JobSpec) -> type[BaseModel]:
    model = spec.signature.input_model
    required = any(f.is_required() for f in model.model_fields.values())
    input_field: Any = (model, ...) if required else (model, Field(default_factory=model))
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{spec.app}_{spec.name}_request",
        __config__=ConfigDict(extra="forbid"),
        input=input_field,
        webhook_endpoint=(str | None, Field(default=None, max_length=2048)),
        priority=(int | None, Field(default=None, ge=0, le=2, description="0 highest")),
        max_time_in_queue_seconds=(float | None, Field(default=None, gt=0, le=72 * 3600)),
        timeout_seconds=(float | None, Field(default=None, gt=0)),
        delay_seconds=(float | None, Field(default=None, ge=0, le=7 * 24 * 3600)),
        eta=(
            AwareDatetime | None,
            Field(default=None, description="Run at (ISO 8601 with zone); not with delay_seconds"),
        ),
        metadata=(dict[str, Any] | None, None),
        retries=(
            int | None,
            Field(default=None, ge=0, le=100, description="Overrides the job's retries"),
        ),
    )
