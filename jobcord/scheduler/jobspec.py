"""JobSpec and AppRegistry: what an app declares, shared by producers and consumers.

``producers.App`` subclasses :class:`AppRegistry` with the decorators and client calls;
consumers load an app module and read the registry without importing producers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from jobcord.storage.ids import new_request_id
from jobcord.storage.requests import NewRequest

from .errors import UnknownJob
from .gpu_classes import NodeSelector
from .payloads import is_binary, pack
from .queues import placement_class, queue_name
from .retry_policy import RetryPolicy
from .signatures import JobSignature, input_hash

__all__ = ["JobSpec", "AppRegistry", "Hook", "JOB_NAME", "RESERVED_JOB_NAMES", "checked_version"]

#: A job's name: in URLs, queue names and the versions a consumer sends with each fetch.
JOB_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
#: A job with a queue of its own waits on ``{app queue}.{name}``: these would be the app
#: queue's own lists (priority levels, parked messages).
RESERVED_JOB_NAMES = frozenset({"p0", "p2", "msgs", "parked"})
_VERSION = re.compile(r"[A-Za-z0-9_.+-]{1,64}")


def checked_version(version: str | None) -> str | None:
    if version is not None and not (isinstance(version, str) and _VERSION.fullmatch(version)):
        raise ValueError("version must be 1-64 letters, digits or '_.+-'")
    return version


@dataclass(frozen=True)
class JobSpec:
    app: str
    name: str
    fn: Callable[..., Any]
    signature: JobSignature
    node_selector: NodeSelector | None = None
    timeout_s: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: The job's own failures that may be retried (within ``retry.retries``).
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    upload: bool = False
    #: Periodic jobs: a cron expression (UTC) and the input each tick runs with.
    schedule: str | None = None
    schedule_input: dict[str, Any] | None = None
    kind: str = "job"  # or "cord"
    #: Cords only: served at /apps/{app}{public_api_path} with this HTTP method.
    public_api_path: str | None = None
    method: str = "POST"
    #: Cords only: the function is a generator whose items are sent as they are produced.
    stream: bool = False
    #: Requests of this job one job process runs at once: threads for a plain function, one
    #: event loop for an ``async def`` one. Such a job waits on a queue of its own, so that a
    #: process running some can take more of the same.
    concurrency: int = 1
    #: Batched: the function takes lists and returns one output per item; a consumer calls it
    #: with up to this many waiting requests, waiting at most ``batch_wait_s`` for more.
    max_batch_size: int = 1
    batch_wait_s: float = 0.0
    #: scheduler.autoscaling.Autoscaling of its own (its replicas serve only it), or None.
    autoscaling: Any = None
    #: Bytes the job process may use while it runs this job (None: the worker's default).
    memory_limit: int | None = None
    #: The declared part of the job's version (``@app.job(version=...)``).
    version: str | None = None

    @cached_property
    def job_version(self) -> str:
        """What a consumer must run to take this job's requests: 12 hex of a hash over the
        input and output schemas, the call's shape and the declared ``version``. Code that
        changes neither runs requests of either build, so a rolling deploy drains freely."""
        shape = {
            "kind": self.kind,
            "input": _schema(
                lambda: self.signature.public_model.model_json_schema(),
                lambda: [
                    (p.name, _type_name(p.annotation))
                    for p in self.signature.inspected.parameters.values()
                ],
            ),
            "output": _schema(
                lambda: self.signature.output_adapter.json_schema(),
                lambda: _type_name(self.signature.output_type),
            ),
            "stream": self.stream,
            "batched": self.batched,
            "version": self.version,
        }
        text = json.dumps(shape, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def gpu_class(self) -> str:
        return placement_class(self.node_selector)

    @property
    def gpu_count(self) -> int:
        return self.node_selector.gpu_count if self.node_selector else 0

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 1

    @property
    def shares_a_process(self) -> bool:
        """Whether several of its requests may run in one process at once (concurrency, or
        batches): such a job waits on a queue of its own."""
        return self.concurrency > 1 or self.batched

    @property
    def own_queue(self) -> bool:
        """Whether it waits on a queue of its own: it shares a process, or it scales on its
        own (its replicas take only its requests)."""
        return self.shares_a_process or self.autoscaling is not None

    @property
    def queue(self) -> str:
        base = queue_name(self.app, self.gpu_class, self.gpu_count)
        return f"{base}.{self.name}" if self.own_queue else base

    def new_request(self, input_json: dict[str, Any], **options: Any) -> NewRequest:
        """A submission of this job with a fresh id; ``options`` are NewRequest fields that
        override the job's defaults (timeout, retries)."""
        fields: dict[str, Any] = {
            "timeout_s": self.timeout_s,
            "max_retries": self.retry.retries,
            **options,
        }
        binary = is_binary(input_json)  # bytes or arrays: msgpack, beside the record
        return NewRequest(
            request_id=new_request_id(),
            app=self.app,
            job=self.name,
            queue=self.queue,
            input_json="null" if binary else json.dumps(input_json),
            input_bin=pack(input_json) if binary else None,
            # Only an idempotency key compares inputs (the hash lives in the key's value).
            input_hash=input_hash(self.name, input_json) if fields.get("idempotency_key") else "",
            job_version=self.job_version,
            **fields,
        )


def _schema(make: Callable[[], Any], names: Callable[[], Any]) -> Any:
    """The JSON schema without what may differ between the API and a worker of one build
    (defaults computed from the environment, titles, descriptions), or for a type pydantic
    cannot describe, the annotations' names."""
    try:
        return _shape_only(make())
    except Exception:  # noqa: BLE001 - any type may refuse a schema
        return names()


_NOT_SHAPE = frozenset({"default", "title", "description", "examples"})


def _shape_only(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_shape_only(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "$defs") and isinstance(value, dict):  # names, not keywords
            out[key] = {name: _shape_only(v) for name, v in value.items()}
        elif key not in _NOT_SHAPE:
            out[key] = _shape_only(value)
    return out


def _type_name(annotation: Any) -> str:
    """An annotation's text with no memory address and no module path (a module is named
    differently by ``pkg.app`` and ``app`` references to one file)."""
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", str(annotation))
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)


@dataclass(frozen=True)
class Hook:
    name: str
    fn: Callable[..., Any]


_BY_NAME: dict[str, AppRegistry] = {}


class AppRegistry:
    """The jobs and lifecycle hooks of one app, by name."""

    def __init__(self, name: str) -> None:
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"app name {name!r} must be letters, digits, '-' or '_'")
        self.name = name
        _BY_NAME[name] = self
        self.jobs: dict[str, JobSpec] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        #: scheduler.autoscaling.Autoscaling, or None (the worker's defaults)
        self.autoscaling: Any = None

    @property
    def runs(self) -> str:
        """``job=version,...`` for every job: what a consumer of this app sends with each
        fetch, so that it takes only requests of the job versions it has."""
        return ",".join(f"{name}={spec.job_version}" for name, spec in sorted(self.jobs.items()))

    @property
    def versions(self) -> dict[str, str]:
        """Each job's version (``JobSpec.job_version``), by name."""
        return {name: spec.job_version for name, spec in sorted(self.jobs.items())}

    @staticmethod
    def named(name: str) -> AppRegistry | None:
        """The app of that name declared last in this process (run_local finds hooks so)."""
        return _BY_NAME.get(name)

    def spec(self, job: str) -> JobSpec:
        try:
            return self.jobs[job]
        except KeyError:
            raise UnknownJob(self.name, job, self.jobs) from None

    def queues(self) -> set[str]:
        return {spec.queue for spec in self.jobs.values()}
