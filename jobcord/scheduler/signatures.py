"""A job's signature as pydantic types: the input model and the output adapter.

Parameters annotated ``JobContext`` are injected, never input. Inputs are validated before
anything is queued (producer side) and again into typed values in the consumer.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from .context import JobContext
from .errors import InputValidationError, JobDefinitionError, OutputValidationError
from .payloads import is_binary, ndarray_type, pack

__all__ = ["JobSignature", "analyse", "input_hash"]


@dataclass(frozen=True)
class JobSignature:
    name: str
    input_model: type[BaseModel]
    output_adapter: TypeAdapter[Any]
    output_type: Any
    context_param: str | None
    parameters: tuple[str, ...]
    _signature: inspect.Signature
    #: The one input parameter, when it is a pydantic model: its fields are then the input.
    model_param: str | None = None

    # -- the input shape: one JSON object, the same in Python, the CLI and HTTP -------------
    # A job whose only input parameter is a model takes that model's fields; any other job
    # takes its parameters by name. (The older wrapped form, {"<param>": {...fields}}, is
    # still accepted for a model job when the model has no field of that name.)
    @property
    def public_model(self) -> type[BaseModel]:
        """The model of the input object callers send (OpenAPI shows it)."""
        if self.model_param is None:
            return self.input_model
        return self.input_model.model_fields[self.model_param].annotation  # type: ignore[return-value]

    def unwrap(self, obj: Any) -> Any:
        """The older wrapped form of a model job's input -> the input object itself."""
        if (
            self.model_param is not None
            and isinstance(obj, dict)
            and set(obj) == {self.model_param}
            and self.model_param not in self.public_model.model_fields
        ):
            return obj[self.model_param]
        return obj

    @property
    def inspected(self) -> inspect.Signature:
        """The input parameters as ``inspect`` sees them (context parameter left out)."""
        return self._signature

    def parameters_of(self, obj: Any) -> Any:
        """An input object (already unwrapped) -> the job's parameters by name."""
        return obj if self.model_param is None else {self.model_param: obj}

    def validate_input(self, obj: Any) -> dict[str, Any]:
        """The input object, as HTTP and the CLI send it -> the validated parameters."""
        return self.validate(self.parameters_of(self.unwrap(obj)))

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positional and keyword arguments of a call -> a validated, JSON-ready input dict.
        One positional dict that names parameters is the input object, as over HTTP."""
        if self.context_param and self.context_param in kwargs:
            raise InputValidationError(
                self.name,
                [{"field": self.context_param, "message": "the JobContext is injected"}],
            )
        if len(args) == 1 and not kwargs and self._is_input_object(args[0]):
            return self.validate_input(args[0])
        try:
            bound = self._signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise InputValidationError(
                self.name, [{"field": "(arguments)", "message": str(exc)}]
            ) from None
        return self.validate(bound.arguments)

    def _is_input_object(self, value: Any) -> bool:
        if self.model_param is not None:
            return isinstance(value, dict)  # the model's fields (or the wrapped form)
        if not isinstance(value, dict) or not self.parameters:
            return False
        first = self.input_model.model_fields[self.parameters[0]].annotation
        takes_mapping = first is Any or typing.get_origin(first) is dict or first is dict
        return set(value) <= set(self.parameters) and not takes_mapping

    def validate(self, data: Any) -> dict[str, Any]:
        """Validate an input mapping; returns its JSON form (what is stored and hashed), or,
        when it holds bytes or arrays, its python form (sent as msgpack, never base64)."""
        model = self._model(data)
        raw = model.model_dump(mode="python")
        if is_binary(raw):
            return raw  # type: ignore[no-any-return]
        return model.model_dump(mode="json")

    def typed_kwargs(self, data: dict[str, Any]) -> dict[str, Any]:
        """The consumer side: stored JSON input -> typed keyword arguments."""
        model = self._model(data)
        return {name: getattr(model, name) for name in self.parameters}

    def _model(self, data: Any) -> BaseModel:
        if not isinstance(data, dict):
            raise InputValidationError(
                self.name, [{"field": "input", "message": "must be a JSON object"}]
            )
        try:
            return self.input_model.model_validate(data)
        except ValidationError as exc:
            raise InputValidationError(self.name, _problems(exc, "input")) from None

    def checked_output(self, value: Any) -> Any:
        """The consumer side: a returned (or yielded) value as its annotated type, in
        pydantic's lax mode like the input (``"3"`` for ``int`` is 3; ``None`` is not)."""
        try:
            return self.output_adapter.validate_python(value)
        except ValidationError as exc:
            raise OutputValidationError(self.name, _problems(exc, "output")) from None


def _problems(exc: ValidationError, top: str) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or top, "message": err["msg"]}
        for err in exc.errors()
    ]


def input_hash(job: str, input_json: dict[str, Any]) -> str:
    """What the idempotency check compares: the job and its canonical input."""
    if is_binary(input_json):
        return hashlib.sha256(job.encode() + b"\0" + pack(input_json)).hexdigest()
    canonical = json.dumps([job, input_json], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _with_array_schema(annotation: Any) -> Any:
    """numpy arrays have no JSON schema: say in OpenAPI that they travel as msgpack."""
    array = ndarray_type()
    if array is None or annotation is not array:
        return annotation
    schema = {"type": "string", "format": "binary", "description": "a numpy array (msgpack)"}
    return Annotated[annotation, WithJsonSchema(schema)]


def _adapter(tp: Any) -> TypeAdapter[Any]:
    """Outputs may be numpy arrays too; types with their own config refuse ours."""
    try:
        return TypeAdapter(tp, config=ConfigDict(arbitrary_types_allowed=True))
    except PydanticUserError:
        return TypeAdapter(tp)


def _item_type(annotation: Any) -> Any:
    """``Iterator[T]`` / ``Generator[T, ...]`` -> T: what a streaming cord yields."""
    args = typing.get_args(annotation)
    return args[0] if args else Any


def _element(annotation: Any, what: str, name: str) -> Any:
    """``list[T]`` -> T: one request's share of a batched job's input or output."""
    if typing.get_origin(annotation) is not list:
        raise JobDefinitionError(
            f"job {name!r} is batched (max_batch_size > 1): its {what} must be annotated "
            f"list[...] (one item per request), not {annotation!r}"
        )
    args = typing.get_args(annotation)
    return args[0] if args else Any


def _per_item(
    sig: inspect.Signature, hints: dict[str, Any], name: str
) -> tuple[inspect.Signature, dict[str, Any]]:
    """A batched job's signature as one request sees it: every input ``list[T]`` is a T, the
    ``list[R]`` it returns an R. Callers pass one item; the consumer passes lists."""
    items = dict(hints)
    params = []
    for pname, param in sig.parameters.items():
        if hints.get(pname) is JobContext:
            params.append(param)
            continue
        if param.default is not inspect.Parameter.empty:
            raise JobDefinitionError(
                f"job {name!r} is batched: parameter {pname!r} cannot have a default"
            )
        items[pname] = _element(hints.get(pname, Any), f"parameter {pname!r}", name)
        params.append(param.replace(annotation=items[pname]))
    items["return"] = _element(hints.get("return", Any), "return value", name)
    return sig.replace(parameters=params), items


def analyse(
    fn: Callable[..., Any], name: str, *, stream: bool = False, batched: bool = False
) -> JobSignature:
    """``batched``: the function takes and returns lists; the signature is one item's."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # unresolvable forward references
        raise JobDefinitionError(f"job {name!r}: cannot resolve annotations: {exc}") from exc
    if batched:
        sig, hints = _per_item(sig, hints, name)
    fields: dict[str, Any] = {}
    context_param = None
    for pname, param in sig.parameters.items():
        annotation = hints.get(pname, Any)
        if annotation is JobContext:
            context_param = pname
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise JobDefinitionError(f"job {name!r}: *args/**kwargs cannot be validated input")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (_with_array_schema(annotation), default)
    # arbitrary types: numpy arrays are accepted as they are (checked with isinstance).
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    model = create_model(f"{name}_input", __config__=config, **fields)  # type: ignore[call-overload]
    output_type = hints.get("return", Any)
    if stream:  # each chunk is validated and encoded as the yielded type
        output_type = _item_type(output_type)
    only = [p for p in fields if p]
    model_param = None
    if len(only) == 1:
        annotation = hints.get(only[0], Any)
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            model_param = only[0]
    return JobSignature(
        name=name,
        model_param=model_param,
        input_model=model,
        output_adapter=_adapter(output_type),
        output_type=output_type,
        context_param=context_param,
        parameters=tuple(fields),
        # Bind calls against the input parameters only (the context may come first).
        _signature=sig.replace(
            parameters=[p for p in sig.parameters.values() if p.name != context_param]
        ),
    )
