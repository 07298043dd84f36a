"""JobSpec and AppRegistry: what an app declares, shared by producers and consumers.

``producers.App`` subclasses :class:`AppRegistry` with the decorators and client calls;
consumers load an app module and read the registry without importing producers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobcord.storage.ids import new_request_id
from jobcord.storage.requests import NewRequest

from .errors import UnknownJob
from .gpu_classes import NodeSelector
from .payloads import is_binary, pack
from .queues import placement_class, queue_name
from .retry_policy import RetryPolicy
from .signatures import JobSignature, input_hash

__all__ = ["JobSpec", "AppRegistry", "Hook"]


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
            **fields,
        )


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
