"""``run_local()``: jobs and cords run in this process — no Redis, no consumers — with the
same input validation, retries and typed results, and fakes for any job (the GPU step).

    with run_local(fakes={embed: lambda text: [0.0] * 4}):
        assert pipeline.run_remote("hello") == ...

Calls inside a job become its children (``status().children``), as on the queue. A request
runs when it is submitted, so ``async_run_remote`` returns a finished handle. Not emulated:
timeouts (nothing is killed), priorities, delays, webhooks, cancels of running work.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobcord.scheduler.context import JobContext, current_job
from jobcord.scheduler.invoke import describe_failure, invoke, next_retry_delay_s
from jobcord.scheduler.jobspec import AppRegistry, JobSpec
from jobcord.scheduler.outputs import JSON_TYPE, encode_output
from jobcord.scheduler.signatures import input_hash
from jobcord.storage.errors import IdempotencyConflict, RequestNotFound
from jobcord.storage.ids import new_request_id
from jobcord.storage.records import RequestError, RequestRecord, ResultFile
from jobcord.storage.requests import Submission
from jobcord.storage.statuses import Status

from .client import SubmitOptions
from .functions import RemoteFunction

__all__ = ["LocalClient", "run_local", "local_client"]

Fake = Callable[..., Any]


class LocalClient:
    """The Client protocol, in memory: each submission runs at once, in this process."""

    def __init__(self, fakes: Mapping[RemoteFunction | str, Fake] | None = None) -> None:
        self.fakes = {
            (f.spec.name if isinstance(f, RemoteFunction) else f): v
            for f, v in (fakes or {}).items()
        }
        self.records: dict[str, RequestRecord] = {}
        self._inputs: dict[str, dict[str, Any]] = {}
        self._specs: dict[str, JobSpec] = {}
        self._blobs: dict[str, bytes] = {}
        self._idem: dict[tuple[str, str], tuple[str, str]] = {}
        self._children: dict[str, list[str]] = {}
        self._state: dict[str, dict[str, Any]] = {}  # on_startup results, per app
        self._lock = threading.RLock()
        self._dir = tempfile.TemporaryDirectory(prefix="jobcord-local-")

    # -- the Client protocol ---------------------------------------------------------------
    def submit(self, spec: JobSpec, input_json: dict[str, Any], opts: SubmitOptions) -> Submission:
        if opts.idempotency_key is not None:
            digest = input_hash(spec.name, input_json)
            with self._lock:
                seen = self._idem.get((spec.app, opts.idempotency_key))
                if seen is not None:
                    if seen[1] != digest:
                        raise IdempotencyConflict(opts.idempotency_key, seen[0])
                    return Submission(seen[0], created=False)
        rid = new_request_id()
        record = RequestRecord(
            request_id=rid,
            app=spec.app,
            job=spec.name,
            queue=spec.queue,
            status=Status.QUEUED,
            created_at=time.time(),
            max_retries=spec.retry.retries if opts.retries is None else opts.retries,
            idempotency_key=opts.idempotency_key,
            metadata=opts.metadata,
            parent_id=opts.parent_id,
            priority=1 if opts.priority is None else opts.priority,
        )
        with self._lock:
            self.records[rid] = record
            self._inputs[rid], self._specs[rid] = input_json, spec
            if opts.idempotency_key is not None:
                self._idem[(spec.app, opts.idempotency_key)] = (rid, digest)
            if opts.parent_id is not None:
                self._children.setdefault(opts.parent_id, []).append(rid)
        self._run(rid)
        return Submission(rid, created=True)

    def get(self, request_id: str) -> RequestRecord:
        try:
            record = self.records[request_id]
        except KeyError:
            raise RequestNotFound(request_id) from None
        return record.model_copy(update={"children": self._tree(request_id)})

    def wait(self, request_id: str, timeout_s: float | None) -> RequestRecord:
        return self.get(request_id)  # it ran when it was submitted

    def cancel(self, request_id: str, wait_s: float = 0.0) -> Status:
        # Jobs run at submit here: there is never anything left to stop.
        return self.get(request_id).status

    def fetch(self, record: RequestRecord) -> bytes:
        return self._blobs[record.request_id]

    def rerun_unless_succeeded(self, request_id: str) -> None:
        if self.get(request_id).status is not Status.SUCCEEDED:
            self._run(request_id)

    # -- running ---------------------------------------------------------------------------
    def _run(self, rid: str) -> None:
        record, spec = self.records[rid], self._specs[rid]
        while True:
            record.attempt = record.attempt + 1 if record.started_at else 1
            record.status, record.started_at = Status.IN_PROGRESS, time.time()
            try:
                value = self._call(spec, rid, record.attempt)
            except BaseException as exc:  # the job's failure is data, as on a consumer
                failure = describe_failure(exc, spec)
                record.failures += 1
                record.error = RequestError(
                    type=failure.error_type,
                    module=failure.error_module,
                    message=failure.message,
                    traceback=failure.traceback,
                )
                # The same decision as a consumer's; the delay is not slept here.
                retry = next_retry_delay_s(
                    spec.retry, record.max_retries, failure.retryable, record.failures
                )
                if retry is not None:
                    continue
                record.status = Status.FAILED
            else:
                self._store_output(record, spec, value)
                record.status, record.error = Status.SUCCEEDED, None
            record.finished_at = time.time()
            return

    def _call(self, spec: JobSpec, rid: str, attempt: int) -> Any:
        ctx = JobContext(
            request_id=rid,
            attempt=attempt,
            app=spec.app,
            job=spec.name,
            output_dir=Path(self._dir.name) / rid,
            state=self._startup_state(spec),
        )
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        # A streaming cord's items come back as a list.
        return invoke(spec, self._inputs[rid], ctx, fn=self.fakes.get(spec.name, spec.fn))

    def _startup_state(self, spec: JobSpec) -> dict[str, Any]:
        app = AppRegistry.named(spec.app)
        with self._lock:
            if spec.app not in self._state:
                hooks = app.startup_hooks if app is not None else []
                self._state[spec.app] = {h.name: h.fn() for h in hooks}
            return self._state[spec.app]

    def _store_output(self, record: RequestRecord, spec: JobSpec, value: Any) -> None:
        encoded = encode_output(spec.signature, value)
        if encoded.content_type != JSON_TYPE:  # bytes, or msgpack with arrays in it
            self._blobs[record.request_id] = encoded.data
            record.result = ResultFile(
                name="output",
                key=record.request_id,
                size=len(encoded.data),
                content_type=encoded.content_type,
            )
        else:
            record.output = json.loads(encoded.data)

    def _tree(self, rid: str) -> list[dict[str, Any]]:
        out = []
        for child in self._children.get(rid, []):
            rec = self.records[child]
            out.append(
                {
                    "request_id": child,
                    "job": rec.job,
                    "status": rec.status.value,
                    "attempt": rec.attempt,
                    "error": rec.error.type if rec.error else None,
                    "children": self._tree(child),
                }
            )
        return out

    def close(self) -> None:
        self._dir.cleanup()


_stack: list[LocalClient] = []


def local_client() -> LocalClient | None:
    """The innermost ``run_local`` client, if one is active."""
    return _stack[-1] if _stack else None


@contextmanager
def run_local(fakes: Mapping[RemoteFunction | str, Fake] | None = None) -> Iterator[LocalClient]:
    """Within the block every job and cord call runs in this process; ``fakes`` maps a job
    (its function or name) to a stand-in called with the same validated inputs."""
    if current_job() is not None:
        raise RuntimeError("run_local() is for tests and scripts, not inside a running job")
    client = LocalClient(fakes)
    _stack.append(client)
    try:
        yield client
    finally:
        _stack.remove(client)
        client.close()
