"""Request bodies of the job routes, built per job so that OpenAPI shows each input schema:
the SDK's options model (``RequestOptions``, every bound included) plus the job's input."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, BeforeValidator, Field, create_model

from jobcord.scheduler.jobspec import JobSpec

from ..options import RequestOptions

__all__ = ["job_body_model", "Accepted", "tidy_errors"]

#: The body models' names, which FastAPI's ``Body | bytes`` union puts in error locations.
_BODY_MODELS: set[str] = set()


class Accepted(BaseModel):
    request_id: str
    status: str
    created: bool = True  # False: an earlier request with the same Idempotency-Key and body


def job_body_model(spec: JobSpec) -> type[BaseModel]:
    """``input`` is the job's input object (scheduler.signatures: a model job's fields, else
    its parameters by name), the same object the SDK and the CLI take."""
    signature = spec.signature
    model = signature.public_model
    required = any(f.is_required() for f in model.model_fields.values())
    typed: Any = Annotated[model, BeforeValidator(signature.unwrap)]
    input_field: Any = (typed, ...) if required else (typed, Field(default_factory=model))
    name = f"{spec.app}_{spec.name}_request"
    _BODY_MODELS.add(name)
    return create_model(  # type: ignore[call-overload, no-any-return]
        name, __base__=RequestOptions, input=input_field
    )


def tidy_errors(errors: Sequence[Any]) -> list[Any]:
    """Validation errors as a caller reads them: ``body.timeout_seconds``, not the union
    branch's ``body.<model>.timeout_seconds``; without the raw-bytes branch's complaint
    about a JSON body; and values JSON cannot carry (``Infinity``, ``NaN``) as text."""
    out = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if loc[:2] == ("body", "bytes") and error.get("type") == "bytes_type" and len(errors) > 1:
            continue
        if len(loc) > 1 and loc[0] == "body" and _is_branch(loc[1]):
            error = {**error, "loc": ("body", *loc[2:])}
        out.append(_finite(jsonable_encoder(error)))
    return out


def _is_branch(part: Any) -> bool:
    return isinstance(part, str) and (part in _BODY_MODELS or part.startswith("function-"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
