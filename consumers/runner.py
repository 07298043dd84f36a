"""The body of the one dramatiq actor: run attempt N of a request in a warm child slot.

claim (atomic: QUEUED -> IN_PROGRESS with a lease) -> run in a child with the job's timeout
-> store the result -> finish (SUCCEEDED | FAILED | TIMED_OUT | CANCELED) or requeue a retry.
A stale message (the request moved on, e.g. redelivered by dramatiq after we recovered it)
is acknowledged and ignored: that is what makes redelivery safe.
"""

from __future__ import annotations

import functools
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import redis
import structlog
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from scheduler.invoke import next_retry_delay_s
from scheduler.jobspec import AppRegistry, JobSpec
from scheduler.payloads import unpack
from scheduler.retry_policy import RetryPolicy
from storage.errors import RequestNotFound, ResultStoreError
from storage.records import RequestRecord
from storage.requests import BrokerAck, RequestStore
from storage.results import ResultStore, named_keys, result_prefix
from storage.settings import Settings
from storage.statuses import Status

from .claims import FetchClaims
from .leases import LeaseKeeper, Running
from .metrics import JOBS_FINISHED, job_metrics
from .protocol import Fence, Finished, FinishHere, Task
from .results import store_result, stored_keys
from .slots import ChildSlot, Outcome, OutcomeKind, StopReason

__all__ = ["Runner"]

log = structlog.get_logger("jobcord.runner")
_F = TypeVar("_F", bound=Callable[..., Any])

_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


def _retrying_when_redis_is_down(**policy: Any) -> Callable[[_F], _F]:
    """tenacity's retry on a Redis outage, entered only once a first plain call has met
    one: the hot path does not pay tenacity's bookkeeping on every claim and finish."""
    policy = {"retry": retry_if_exception_type(_REDIS_DOWN), "reraise": True, **policy}

    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except _REDIS_DOWN:
                return retry(**policy)(fn)(*args, **kwargs)

        return cast(_F, call)

    return decorate


# Redis blips must not lose a finished attempt: keep trying the final write for a while (past
# that, the lease expires and recovery runs the request again: nothing is lost).
_persist = _retrying_when_redis_is_down(
    stop=stop_after_delay(60), wait=wait_exponential(multiplier=0.1, max=5)
)
# A claim that failed would dead-letter the message and strand a QUEUED request: wait for Redis
# as long as it takes (the message stays unacked, so a dead consumer's copy comes back).
_until_redis_returns = _retrying_when_redis_is_down(wait=wait_exponential(multiplier=0.1, max=5))


class Runner:
    def __init__(
        self,
        app: AppRegistry,
        store: RequestStore,
        results: ResultStore,
        leases: LeaseKeeper,
        slots: list[ChildSlot],
        settings: Settings,
        worker_id: str,
        *,
        add_capacity: Callable[[int], None] | None = None,
        max_lent: int = 0,
        current_ack: Callable[[], BrokerAck | None] | None = None,
        acked_by_finish: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.results = results
        self.leases = leases
        self.settings = settings
        self.worker_id = worker_id
        self._idle: queue.Queue[ChildSlot] = queue.Queue()
        for slot in slots:
            self._idle.put(slot)
        self._add_capacity = add_capacity or (lambda n: None)
        self._lending = threading.Lock()
        self._to_retire = 0  # borrowed slots to close when they come back idle
        self._lent: set[str] = set()  # requests whose job waits and whose slot is lent
        self._max_lent = max_lent
        # Acking the broker message in the finish script (worker.py passes the broker's).
        self._current_ack = current_ack or (lambda: None)
        self._acked_by_finish = acked_by_finish or (lambda message_id: None)
        #: Attempts the fetch script claimed, until a worker thread takes them.
        self.claims = FetchClaims(store, leases, settings, worker_id, self._current_ack)

    def execute(self, request_id: str, attempt: int) -> None:
        claim = self.claims.take()
        if claim is not None:  # the hot path: claimed by the fetch script already
            token, record = claim.token, claim.record()
            if claim.stopped is not None:
                self._stopped_before_start(record, token, claim.stopped)
                return
        else:
            token = uuid.uuid4().hex
            outcome, claimed = _until_redis_returns(self.store.claim)(
                request_id, attempt, self.worker_id, token
            )
            if claimed is None:
                log.info("message skipped", request_id=request_id, attempt=attempt, reason=outcome)
                return
            record = claimed
        log.debug("request started", request_id=request_id, job=record.job, attempt=attempt)
        slot = self._idle.get()
        fence = Fence(request_id, record.attempt)
        # A cancel or a lost lease stops this task only: never the slot's next one.
        self.leases.add(request_id, Running(token, lambda why: slot.stop_task(fence, why)))
        output_dir = self._output_dir(record)
        running, seconds = job_metrics(record.app, record.job)
        running.inc()
        started = time.monotonic()
        handed_on = False
        try:
            try:
                result = self._run(slot, record, token, output_dir)
            except Exception as exc:  # noqa: BLE001 - never lose the attempt: the slot is
                # doomed already (see ChildSlot.run); count it as a lost worker and re-run.
                log.exception("attempt broke", request_id=request_id, attempt=attempt)
                result = Outcome(OutcomeKind.CRASHED, message=f"{type(exc).__name__}: {exc}")
            finally:
                self._waiting(slot, request_id, False)  # killed while waiting: take it back
            if slot.ready_for_next and result.ended_by_child is None:
                # The child is free: it takes the next job while this outcome is stored (a
                # doomed child is replaced after, so that a restart never delays the record).
                # Nothing is left to store when the child ended the attempt itself.
                handed_on = True
                self._add_capacity(1)
                self._give_back(slot)
            self._record(record, token, result, output_dir)
        finally:
            running.dec()
            seconds.observe(time.monotonic() - started)
            self.leases.remove(request_id)
            if output_dir is not None:
                shutil.rmtree(output_dir, ignore_errors=True)
            if handed_on:
                self._add_capacity(-1)
            else:
                self._give_back(slot)

    def _stopped_before_start(self, record: RequestRecord, token: str, why: str) -> None:
        try:
            if why == "cancel":
                err = {"type": "Canceled", "message": "canceled before it started"}
                self._finish(record.request_id, token, Status.CANCELED, record, error=err)
            else:
                log.warning("lease lost before start", request_id=record.request_id)
        finally:
            self.leases.remove(record.request_id)

    # -- lending: a job waiting on its children does not hold the slot they need -----------
    def _waiting(self, slot: ChildSlot, request_id: str, on: bool) -> None:
        """A job started (True) or stopped (False) waiting on other requests: lend its slot,
        i.e. start one more child like it (same devices) and take one more message."""
        with self._lending:
            if not on:
                if request_id in self._lent:
                    self._lent.discard(request_id)
                    self._to_retire += 1
                    self._add_capacity(-1)
                return
            if len(self._lent) >= self._max_lent:
                log.warning("no slot lent: JOBCORD_MAX_LENT_SLOTS reached", lent=len(self._lent))
                return
            self._lent.add(request_id)
        self._add_capacity(1)
        threading.Thread(target=self._start_borrowed, args=(slot.sibling(),), daemon=True).start()

    def _start_borrowed(self, slot: ChildSlot) -> None:
        try:
            slot.start()
        except Exception as exc:  # noqa: BLE001 - a failed start must not take the consumer down
            log.error("borrowed slot did not start", error=str(exc))
            with self._lending:  # the wait's end will ask to retire it: nothing to retire
                self._to_retire -= 1
            return
        self._give_back(slot)

    def _give_back(self, slot: ChildSlot) -> None:
        with self._lending:
            retire = slot.borrowed and self._to_retire > 0
            if retire:
                self._to_retire -= 1
        if retire:
            slot.close()
            return
        try:
            slot.ensure_running()
        finally:
            self._idle.put(slot)

    def _output_dir(self, record: RequestRecord) -> Path | None:
        """A fresh directory, only for jobs that can see it (they take a JobContext)."""
        spec = self.app.jobs.get(record.job)
        if spec is None or not (spec.signature.context_param or spec.upload):
            return None
        return Path(tempfile.mkdtemp(prefix=f"jobcord-{record.request_id}-"))

    def _run(
        self, slot: ChildSlot, record: RequestRecord, token: str, output_dir: Path | None
    ) -> Outcome:
        spec = self.app.jobs.get(record.job)
        if spec is None:
            return Outcome(
                OutcomeKind.ERROR,
                error_type="UnknownJob",
                message=f"this consumer's app {self.app.name!r} has no job {record.job!r}",
                retryable=False,
            )
        rid = record.request_id

        def fenced(written: bool) -> None:
            if not written:  # our lease is gone: stop now rather than at the next renewal
                slot.stop_current(StopReason.LOST)

        if slot.devices:  # the devices of the child that runs it, not every GPU of the worker
            fenced(self.store.set_attempt_fields(rid, token, device=slot.devices))
        data = record.input
        if record.input_ref is not None:  # a large binary input, in the result store
            data = unpack(self.results.get_bytes(record.input_ref))
        elif record.input_format == "msgpack":  # bytes or arrays: raw, beside the record
            data = unpack(self.store.input_bytes(rid))
        task = Task(
            rid,
            record.attempt,
            record.job,
            data,
            str(output_dir or ""),
            self._leave(spec, record, token),
        )
        timeout = record.timeout_s if record.timeout_s is not None else spec.timeout_s
        return slot.run(
            task,
            timeout,
            lambda f, m: fenced(self.store.report_progress(rid, token, f, m)),
            lambda chunk: fenced(self.store.append_chunk(rid, token, chunk)),
            lambda on: self._waiting(slot, rid, on),
        )

    def _leave(self, spec: JobSpec, record: RequestRecord, token: str) -> FinishHere | None:
        """Whether the child may end this attempt itself if it succeeds small: only for a job
        that takes no JobContext (whose progress, chunks and waits the parent writes as they
        come through the pipe: a finish by the child could overtake them), uploads nothing,
        and runs a first attempt (the winner of a later one sweeps what earlier attempts left
        in the result store, which the parent does)."""
        if spec.upload or spec.stream or spec.signature.context_param or record.attempt != 1:
            return None
        ack = self._current_ack()
        return FinishHere(token, ack, self.settings.inline_output_max_bytes)

    def _ended_by_child(self, record: RequestRecord, ended: Finished) -> None:
        if ended.acked:
            ack = self._current_ack()
            if ack is not None:
                self._acked_by_finish(ack.message_id)
        if ended.finished:
            JOBS_FINISHED.labels(record.app, record.job, Status.SUCCEEDED.value).inc()
        else:
            log.warning("finish ignored: lease no longer ours", request_id=record.request_id)

    @_persist
    def _record(
        self, record: RequestRecord, token: str, result: Outcome, output_dir: Path | None
    ) -> None:
        rid = record.request_id
        if result.ended_by_child is not None:
            self._ended_by_child(record, result.ended_by_child)
            return
        if result.kind is OutcomeKind.OK:
            spec = self.app.jobs[record.job]
            try:
                fields = store_result(
                    self.results,
                    record,
                    result.content_type,
                    result.data,
                    output_dir,
                    upload_files=spec.upload,
                    inline_max_bytes=self.settings.inline_output_max_bytes,
                )
            except Exception as exc:  # noqa: BLE001 - S3 down or a bug: retried on its own
                # budget, then FAILED; never an attempt left to expire.
                log.exception("storing the result failed", request_id=rid)
                kind = (
                    "ResultStoreError" if isinstance(exc, ResultStoreError) else type(exc).__name__
                )
                self._infra_fault(record, token, _error(kind, exc))
                return
            if not self._finish(rid, token, Status.SUCCEEDED, record, **fields, progress=1.0):
                self._discard(record, stored_keys(fields))
            return
        if result.kind is OutcomeKind.ERROR:
            self._failed(record, token, result)
        elif result.kind is OutcomeKind.TIMEOUT:
            self._finish(rid, token, Status.TIMED_OUT, record, error=_error("Timeout", result))
        elif result.kind is OutcomeKind.CRASHED:
            self._worker_lost(record, token, result)
        elif result.stop_reason is StopReason.CANCEL:
            err = {"type": "Canceled", "message": "canceled while running"}
            self._finish(rid, token, Status.CANCELED, record, error=err)
        elif result.stop_reason is StopReason.SHUTDOWN:
            # The consumer is stopping: hand the request back, not counted against it.
            self.store.retry(
                rid,
                token,
                delay_s=0,
                counter="preemptions",
                error=_error("Preempted", result),
                reason="consumer shut down",
            )
        elif result.stop_reason is StopReason.LOST:
            log.warning("lease lost; attempt abandoned", request_id=rid, attempt=record.attempt)

    def _discard(self, record: RequestRecord, keys: list[str]) -> None:
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
            self.results.delete(keys)
        except ResultStoreError as exc:
            log.warning("could not remove a losing attempt's objects", error=str(exc))

    def _sweep_earlier_attempts(self, record: RequestRecord) -> None:
        """After the winning finish: objects earlier attempts wrote before their consumer died
        (no one was left to remove them) go too. Best effort; callers never read them."""
        for attempt in range(1, record.attempt):
            prefix = result_prefix(record.app, record.job, record.request_id, attempt)
            try:
                self.results.delete_prefix(prefix)
            except ResultStoreError as exc:
                log.warning("could not sweep an earlier attempt", prefix=prefix, error=str(exc))
                return

    def _failed(self, record: RequestRecord, token: str, result: Outcome) -> None:
        spec = self.app.jobs.get(record.job)
        failures = record.failures + 1
        error = _error(result.error_type, result)
        policy = spec.retry if spec is not None else None
        delay = next_retry_delay_s(policy, record.max_retries, result.retryable, failures)
        if delay is not None:
            nxt = self.store.retry(
                record.request_id,
                token,
                delay_s=delay,
                counter="failures",
                error=error,
                reason=f"retry after {result.error_type}",
            )
            log.info("request will retry", request_id=record.request_id, next=nxt, delay_s=delay)
            JOBS_FINISHED.labels(record.app, record.job, "RETRY").inc()
        else:
            self._finish(record.request_id, token, Status.FAILED, record, error=error)

    def _infra_fault(self, record: RequestRecord, token: str, error: dict[str, Any]) -> None:
        """Not the job's fault (e.g. S3 down): retried on its own budget, with backoff."""
        faults = record.infra_failures + 1
        if faults > self.settings.max_infra_retries:
            self._finish(record.request_id, token, Status.FAILED, record, error=error)
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

    def _worker_lost(self, record: RequestRecord, token: str, result: Outcome) -> None:
        """The job's own process died (segfault, OOM kill): count it, requeue or give up."""
        error = _error("WorkerLost", result)
        losses = record.worker_losses + 1
        if losses >= self.settings.max_worker_losses:
            self._finish(
                record.request_id, token, Status.FAILED, record, error=error, worker_losses=losses
            )
        else:
            self.store.retry(
                record.request_id,
                token,
                delay_s=0,
                counter="worker_losses",
                error=error,
                reason="job process died",
            )

    def _finish(
        self, rid: str, token: str, status: Status, record: RequestRecord, **fields: Any
    ) -> bool:
        ack = self._current_ack()
        finished, acked = self.store.finish_and_ack(rid, token, status, ack, **fields)
        if acked and ack is not None:
            self._acked_by_finish(ack.message_id)
        if finished:
            error = fields.get("error")
            why = {"error": f"{error['type']}: {error['message']}"[:300]} if error else {}
            log.info("request finished", request_id=rid, status=status.value, **why)
            JOBS_FINISHED.labels(record.app, record.job, status.value).inc()
            if record.attempt > 1:
                self._sweep_earlier_attempts(record)
            return True
        log.warning("finish ignored: lease no longer ours", request_id=rid)
        return False


def _error(kind: str, result: Outcome | Exception) -> dict[str, Any]:
    if isinstance(result, Exception):
        return {"type": kind, "message": str(result), "traceback": None}
    out = {"type": kind, "message": result.message, "traceback": result.traceback}
    if result.error_module:
        out["module"] = result.error_module
    return out
