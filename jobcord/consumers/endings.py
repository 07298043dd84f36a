"""How an attempt ends: every outcome written once, with the attempt's lease token.

A child ends the attempts it ran (success, the job's own failure); its parent ends those it
stopped or lost (timeout, cancel, a dead process, a shutdown). Both go through this one
class, and every write is a script fenced by the lease token: whichever comes second finds
the lease gone and writes nothing, so an attempt has one outcome and a late one never
changes what a caller reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import redis
import structlog
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from jobcord.scheduler.invoke import JobFailure, next_retry_delay_s
from jobcord.scheduler.jobspec import AppRegistry
from jobcord.scheduler.outputs import EncodedOutput
from jobcord.scheduler.retry_policy import RetryPolicy, is_retryable
from jobcord.storage.errors import RequestNotFound, ResultStoreError, refuses_writes
from jobcord.storage.records import RequestRecord
from jobcord.storage.requests import RequestStore
from jobcord.storage.results import ResultStore, named_keys, result_prefix
from jobcord.storage.settings import Settings
from jobcord.storage.statuses import Status

from .claim import Claim
from .metrics import JobCounts
from .results import AttemptId, store_result, stored_keys

__all__ = ["Endings", "AttemptRef", "error_dict", "oom_failure"]

log = structlog.get_logger("jobcord.endings")
_F = TypeVar("_F", bound=Callable[..., Any])

_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
#: The longest an outcome write is retried (JOBCORD_OUTCOME_RETRY_S sets the child's; the
#: parent's writes keep this default), and the longest pause between two tries.
_OUTCOME_RETRY_S = 300.0
_OUTCOME_BACKOFF_MAX_S = 5.0


def _redis_unavailable(exc: BaseException) -> bool:
    """Unreachable, or refusing writes for now (maxmemory, a replica, a failed disk)."""
    return isinstance(exc, _REDIS_DOWN) or refuses_writes(exc)


def _retrying_when_redis_is_down(fn: _F) -> _F:
    """An outcome is held, not lost, while Redis is unreachable or refuses writes: the write
    is tried again with backoff for up to the outcome budget (its lease is renewed meanwhile:
    renewal is allowed when Redis is out of memory). Past it the error is raised to the
    caller, which logs it and goes on; the lease then runs out and recovery runs the request
    again. tenacity is entered only once a first plain call has failed, so the hot path pays
    nothing."""

    @functools.wraps(fn)
    def call(self: Endings, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            if not _redis_unavailable(exc):
                raise
            log.warning("outcome held: redis unavailable, retrying", error=str(exc)[:200])
        policy: dict[str, Any] = {
            "retry": retry_if_exception(_redis_unavailable),
            "reraise": True,
            "stop": stop_after_delay(self.outcome_retry_s),
            "wait": wait_exponential(multiplier=0.1, max=_OUTCOME_BACKOFF_MAX_S),
        }
        return retry(**policy)(fn)(self, *args, **kwargs)

    return cast(_F, call)


def oom_failure(app: AppRegistry, job: str, message: str, traceback: str = "") -> JobFailure:
    """An attempt that ran out of memory, as the job's failure (retryable where its
    ``retry_on`` takes a ``MemoryError``)."""
    spec = app.jobs.get(job)
    retryable = spec is not None and is_retryable(MemoryError(message), spec.retry_on)
    return JobFailure("OutOfMemory", message, traceback, retryable, "")


def error_dict(kind: str, message: str, traceback: str | None = None, module: str = "") -> dict:
    out: dict[str, Any] = {"type": kind, "message": message, "traceback": traceback}
    if module:
        out["module"] = module
    return out


@dataclass(frozen=True)
class AttemptRef:
    """An attempt the parent ends, as the board shows it (the full record is not needed)."""

    request_id: str
    app: str
    job: str
    attempt: int


#: Writes a final status: (request id, lease token, status, fields) -> whether it was ours.
Finisher = Callable[[str, str, Status, dict[str, Any]], bool]


class Endings:
    """``finish``: how a final status is written (a child's also takes its next work in the
    same round trip); by default the store's fenced finish."""

    def __init__(
        self,
        app: AppRegistry,
        store: RequestStore,
        results: Callable[[], ResultStore],
        settings: Settings,
        counts: JobCounts,
        *,
        finish: Finisher | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self._results = results  # opened on first use: boto3 only where a result is stored
        self.settings = settings
        self.counts = counts
        self.outcome_retry_s = float(getattr(settings, "outcome_retry_s", _OUTCOME_RETRY_S))
        self._write_final = finish or (
            lambda rid, token, status, fields: store.finish(rid, token, status, **fields)
        )

    # -- a child's own outcomes ------------------------------------------------------------
    @_retrying_when_redis_is_down
    def succeeded(
        self,
        record: Claim,
        output: EncodedOutput,
        output_dir: Path | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """``extra``: more fields for the record (a batch's size and position)."""
        fields = self._stored(record, output, output_dir)
        if fields is None:
            return
        fields.update(extra or {}, progress=1.0)
        if not self._finish(record, record.token, Status.SUCCEEDED, **fields):
            self._discard(record, stored_keys(fields))

    @_retrying_when_redis_is_down
    def succeeded_together(
        self, successes: list[tuple[Claim, EncodedOutput, dict[str, Any]]]
    ) -> None:
        """Several successes (a batch's members) made durable and ended in one script; each
        fenced by its own lease, each judged on its own."""
        ready: list[tuple[Claim, dict[str, Any]]] = []
        for record, output, extra in successes:
            fields = self._stored(record, output, None)
            if fields is not None:
                fields.update(extra, progress=1.0)
                ready.append((record, fields))
        if not ready:
            return
        written = self.store.finish_many(
            [(r.request_id, r.token, Status.SUCCEEDED, f) for r, f in ready]
        )
        ended = []
        for (record, fields), ok in zip(ready, written, strict=True):
            if ok:
                ended.append(record.request_id)
                self._finished(record, Status.SUCCEEDED, fields, quiet=True)
            else:
                log.info("outcome refused: the lease is no longer this attempt's",
                         request_id=record.request_id)  # fmt: skip
                self._discard(record, stored_keys(fields))
        if ended:  # one line for the call, naming every request (grep finds each)
            log.info("requests finished", status="SUCCEEDED", request_ids=ended)

    def _stored(
        self, record: Claim, output: EncodedOutput, output_dir: Path | None
    ) -> dict[str, Any] | None:
        """The record fields of a success's result (inline, or stored); None when the store
        failed, and the attempt was handed to the infrastructure-fault path."""
        spec = self.app.jobs[record.job]
        try:
            return store_result(
                self._results,
                record,
                output.content_type,
                output.data,
                output_dir,
                upload_files=spec.upload,
                inline_max_bytes=self.settings.inline_output_max_bytes,
            )
        except Exception as exc:  # noqa: BLE001 - S3 down or a bug: retried on its own
            # budget, then FAILED; never an attempt left to expire.
            log.exception("storing the result failed", request_id=record.request_id)
            kind = "ResultStoreError" if isinstance(exc, ResultStoreError) else type(exc).__name__
            self._infra_fault(record, record.token, error_dict(kind, str(exc)))
            return None

    @_retrying_when_redis_is_down
    def failed(
        self, record: Claim, failure: JobFailure, extra: dict[str, Any] | None = None
    ) -> None:
        """The job raised: retried by its own policy, else FAILED (``extra``: more fields
        for the record when it ends)."""
        self._job_failed(record, record.token, failure, extra)

    def _job_failed(
        self,
        record: Claim | RequestRecord,
        token: str,
        failure: JobFailure,
        extra: dict[str, Any] | None = None,
    ) -> None:
        spec = self.app.jobs.get(record.job)
        error = error_dict(
            failure.error_type, failure.message, failure.traceback, failure.error_module
        )
        policy = spec.retry if spec is not None else None
        failures = record.failures + 1
        delay = next_retry_delay_s(policy, record.max_retries, failure.retryable, failures)
        if delay is None:
            self._finish(record, token, Status.FAILED, error=error, **(extra or {}))
            return
        nxt = self.store.retry(
            record.request_id,
            token,
            delay_s=delay,
            counter="failures",
            error=error,
            reason=f"retry after {failure.error_type}",
        )
        log.info("request will retry", request_id=record.request_id, next=nxt, delay_s=delay)
        self.counts.finished(record.app, record.job, "RETRY")

    @_retrying_when_redis_is_down
    def append_chunk(self, request_id: str, token: str, data: bytes) -> bool:
        """One streamed item, in order (fenced; ridden through a Redis blip, never lost)."""
        return self.store.append_chunk(request_id, token, data)

    # -- outcomes the parent writes for attempts it stopped or lost --------------------------
    @_retrying_when_redis_is_down
    def timed_out(self, ref: AttemptRef, token: str, timeout_s: float) -> None:
        err = error_dict("Timeout", f"exceeded its timeout of {timeout_s} s")
        self._finish(ref, token, Status.TIMED_OUT, error=err)

    @_retrying_when_redis_is_down
    def canceled(self, ref: AttemptRef, token: str) -> None:
        err = error_dict("Canceled", "canceled while running")
        self._finish(ref, token, Status.CANCELED, error=err)

    @_retrying_when_redis_is_down
    def worker_lost(self, ref: AttemptRef, token: str, message: str) -> None:
        """The job's own process died (segfault, OOM kill): count it, requeue or give up."""
        try:
            record = self.store.get(ref.request_id)
        except RequestNotFound:
            return
        if record.attempt != ref.attempt:
            return  # recovered and run again meanwhile: not this attempt's to end
        error = error_dict("WorkerLost", message)
        losses = record.worker_losses + 1
        if losses >= self.settings.max_worker_losses:
            self._finish(record, token, Status.FAILED, error=error, worker_losses=losses)
            return
        self.store.retry(
            record.request_id,
            token,
            delay_s=0,
            counter="worker_losses",
            error=error,
            reason="job process died",
        )

    @_retrying_when_redis_is_down
    def out_of_memory(self, ref: AttemptRef, token: str, message: str) -> None:
        """The kernel ended the job process for its memory limit: the job's own failure,
        retried by its policy as a ``MemoryError`` would be (never a lost worker)."""
        try:
            record = self.store.get(ref.request_id)
        except RequestNotFound:
            return
        if record.attempt != ref.attempt:
            return  # recovered and run again meanwhile: not this attempt's to end
        self._job_failed(record, token, oom_failure(self.app, ref.job, message))

    @_retrying_when_redis_is_down
    def preempted(self, request_id: str, token: str, reason: str) -> None:
        """Not the request's fault (the consumer stops, or a sibling's stop took its process
        down): handed back to the front of its queue, not counted against it."""
        self.store.retry(
            request_id,
            token,
            delay_s=0,
            counter="preemptions",
            error=error_dict("Preempted", reason),
            reason=reason,
        )

    # -- shared ----------------------------------------------------------------------------
    def _infra_fault(self, record: Claim, token: str, error: dict[str, Any]) -> None:
        """Not the job's fault (e.g. S3 down): retried on its own budget, with backoff."""
        faults = record.infra_failures + 1
        if faults > self.settings.max_infra_retries:
            self._finish(record, token, Status.FAILED, error=error)
            return
        delay = RetryPolicy(initial_delay_s=1.0, max_delay_s=30.0).delay_s(faults)
        self.store.retry(
            record.request_id,
            token,
            delay_s=delay,
            counter="infra_failures",
            error=error,
            reason=f"retry after {error['type']}",
        )
        log.warning("infrastructure fault; will retry", request_id=record.request_id, **error)

    def _finish(self, record: AttemptId, token: str, status: Status, **fields: Any) -> bool:
        rid = record.request_id
        if not self._write_final(rid, token, status, fields):
            log.info("outcome refused: the lease is no longer this attempt's", request_id=rid)
            return False
        self._finished(record, status, fields)
        return True

    def _finished(
        self, record: AttemptId, status: Status, fields: dict[str, Any], *, quiet: bool = False
    ) -> None:
        """After a final status was written: log (unless ``quiet``: the caller logs), count,
        sweep what earlier attempts left."""
        rid = record.request_id
        error = fields.get("error")
        if quiet:
            pass
        elif error:
            why = f"{error['type']}: {error['message']}"[:300]
            log.info("request finished", request_id=rid, status=status.value, error=why)
        else:
            log.info("request finished", request_id=rid, status=status.value)
        self.counts.finished(record.app, record.job, status.value)
        if record.attempt > 1:
            self._sweep_earlier_attempts(record)

    def _discard(self, record: AttemptId, keys: list[str]) -> None:
        """A losing attempt's objects: nobody names them; remove them (best effort). Never
        those the record names: when finish's reply was lost and the retried finish found the
        request already ended, the winner may be this very attempt."""
        try:
            named = set(named_keys(self.store.get(record.request_id)))
        except RequestNotFound:
            named = set()
        keys = [k for k in keys if k not in named]
        if not keys:
            return
        log.warning("attempt lost the race; its objects removed", request_id=record.request_id)
        try:
            self._results().delete(keys)
        except ResultStoreError as exc:
            log.warning("could not remove a losing attempt's objects", error=str(exc))

    def _sweep_earlier_attempts(self, record: AttemptId) -> None:
        """After the winning finish: objects earlier attempts wrote before their consumer died
        (no one was left to remove them) go too. Best effort; callers never read them."""
        for attempt in range(1, record.attempt):
            prefix = result_prefix(record.app, record.job, record.request_id, attempt)
            try:
                self._results().delete_prefix(prefix)
            except ResultStoreError as exc:
                log.warning("could not sweep an earlier attempt", prefix=prefix, error=str(exc))
                return
