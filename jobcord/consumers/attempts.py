"""The child's consumer loop: fetch and claim, run, end the attempt, show it on the board.

One pass: the fetch script pops a message and starts its attempt (a lease from that moment);
the attempt goes on the board (its parent renews the lease and watches the timeout); the
job runs here; the outcome is written with the lease token (``jobcord.consumers.endings``); the
entry is cleared. Writes an attempt makes while it runs (progress, streamed items) are fenced
by the same token: one that is refused means another attempt owns the request now, and this
one stops at once (:class:`AttemptLost`).

The loop is supervised: whatever a pass raises is logged, reported to the parent (its health
shows it) and backed off from, doubling up to 10 s; then the loop goes on.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import structlog

from jobcord.scheduler.context import JobContext
from jobcord.scheduler.invoke import JobFailure, describe_failure, invoke
from jobcord.scheduler.jobspec import AppRegistry, JobSpec
from jobcord.scheduler.outputs import JSON_TYPE, EncodedOutput, encode_output
from jobcord.scheduler.payloads import unpack
from jobcord.storage.connection import connect
from jobcord.storage.errors import NotAcknowledged
from jobcord.storage.requests import RequestStore
from jobcord.storage.results import ResultStore, open_result_store
from jobcord.storage.settings import Settings
from jobcord.storage.statuses import Status

from .batches import BatchRun
from .board import ChildBoard, Phase
from .child import EXIT_POISONED, EXIT_RECYCLE, ChildConfig
from .claim import Claim
from .cuda_errors import poisons_cuda_context
from .devices import memory_probe
from .endings import Endings, oom_failure
from .fetcher import Fetcher
from .flow import FLOW, Attempt, AttemptLost, Flow
from .lanes import SharedRun
from .limits import MemoryLimit, memory_limit_for, out_of_memory_message
from .metrics import JobCounts
from .protocol import ChildMessage, Fence, LoopFailed, Waiting
from .recycling import Recycling

__all__ = ["ChildConsumer"]

log = structlog.get_logger("jobcord.child")

#: The fetch loop's longest pause after consecutive errors.
_BACKOFF_MAX_S = 10.0
#: Job counts go to the parent at most this often while busy (and whenever it idles).
_STATS_EVERY_S = 1.0


class ChildConsumer:
    def __init__(
        self,
        app: AppRegistry,
        state: dict[str, Any],
        board: ChildBoard,
        config: ChildConfig,
        settings: Settings,
        send: Callable[[ChildMessage], None],
    ) -> None:
        self.app = app
        self.state = state
        self.board = board
        self.config = config
        self.settings = settings
        self.send = send
        self.store = RequestStore(connect(settings), settings)
        self.counts = JobCounts()
        self.endings = Endings(
            app, self.store, self._result_store, settings, self.counts, finish=self._finish
        )
        self.devices = config.env.get("CUDA_VISIBLE_DEVICES", "")
        self.fetcher = Fetcher(
            self.store,
            config.plan,
            worker=config.worker,
            device=self.devices,
            wake_name=config.wake_name,
            aging_every=settings.priority_aging_every,
            runs=app.runs,
        )
        self._job_index = {name: i for i, name in enumerate(app.jobs)}
        self._results: ResultStore | None = None
        self._stopping = threading.Event()
        self._running: dict[int, JobContext] = {}  # the jobs under way, by id (one, or lanes')
        self._jobs_lock = threading.Lock()
        self._jobs_done = 0
        self._stats_sent_at = 0.0
        self._main = Flow()  # the loop's own: what the last finish took, from any queue
        self._shared: SharedRun | None = None
        self._batches = BatchRun(self)
        self.outputs_dir = Path(config.outputs)
        self._recycled = False  # max jobs reached or too much GPU memory held
        self._leaving = False  # about to exit: a finish takes no more work
        # Decided here, after each job and before its finish takes the next one: a parent
        # looking afterwards would see the next job already claimed by a child it replaces.
        self.recycling = Recycling(
            max_jobs=config.max_jobs,
            memory_fraction=config.recycle_memory_fraction,
            probe=memory_probe(list(config.devices)) if config.recycle_memory_fraction else None,
        )
        self.memory = MemoryLimit(config.memory)
        self._oom_kills_at: dict[int, int] = {}  # by id(ctx): the cgroup's OOM kills then
        # The parent renews leases every lease_ttl/3: silent for half a lease, it is stuck.
        self._parent_patience_s = max(0.5, settings.lease_ttl_s / 2)

    def stopping(self) -> None:
        """From the SIGTERM handler: take no more work; a running job sees ctx.cancelled."""
        self._stopping.set()
        for ctx in list(self._running.values()):
            ctx._cancelled.set()

    def _stop_asked(self) -> bool:
        return self._stopping.is_set() or self.board.stop_asked

    def _result_store(self) -> ResultStore:
        if self._results is None:  # boto3 only when a result is stored or read
            self._results = open_result_store(self.settings)
        return self._results

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until asked to stop; returns the exit code (0, or why to be replaced)."""
        errors = 0
        while not self._stop_asked():
            if self._main.claims is None and self.parent_stuck():
                time.sleep(0.05)  # no new work while nobody would renew its lease
                continue
            try:
                claims, self._main.claims = self._main.claims, None
                if claims is None:
                    claims = self.fetcher.fetch(1)
                    self.board.fetched()
                if not claims:
                    self._send_stats(force=True)
                    self.fetcher.wait_for_work()
                    errors = 0
                    continue
                errors = 0
            except Exception as exc:  # noqa: BLE001 - the loop survives whatever a pass raises
                errors += 1
                self._failed_pass(exc, errors)
                continue
            code = 0
            for claim in [Claim.from_fields(token, fields) for token, fields in claims]:
                spec = self.app.jobs.get(claim.job)
                if code or self._stop_asked():  # not started: back, uncounted
                    self.endings.preempted(claim.request_id, claim.token, "consumer shut down")
                elif spec is not None and spec.batched:
                    code = contextvars.copy_context().run(self._batches.run, spec, claim)
                elif spec is not None and spec.shares_a_process:
                    code = self._share(spec, claim)
                else:
                    code = self._run(claim)
            if code:
                self._leave(code)
                return code
            self._send_stats()
        self._leave(0)
        return 0

    def _share(self, spec: JobSpec, first: Claim) -> int:
        """Run ``first`` and more of its job at once (``concurrency``), until its queue is
        empty or the time slice is over; then the loop looks at every queue again."""
        if self._shared is None:
            self._shared = SharedRun(self)
        return self._shared.run(spec, first)

    def _leave(self, code: int) -> None:
        """Before exiting: claims taken but not started go back uncounted; totals go home."""
        for token, fields in self._main.claims or []:
            self.endings.preempted(fields["id"], token, "consumer shut down")
        self._main.claims = None
        if self._shared is not None:
            self._shared.close()
        self._send_stats(force=True)

    def parent_stuck(self) -> bool:
        return self.board.parent_silent_for() > self._parent_patience_s

    def _finish(self, rid: str, token: str, status: Status, fields: dict[str, Any]) -> bool:
        """Write a final status; while serving, take the next work in the same round trip
        (from the queues of the flow the attempt ran in)."""
        flow = FLOW.get(self._main)
        if self._leaving or not flow.open or self.parent_stuck() or self._stop_asked():
            return self.store.finish(rid, token, status, **fields)
        finished, flow.claims = self.fetcher.finish_and_fetch(
            rid, token, status, fields, queues=flow.queues
        )
        self.board.fetched()
        return finished

    def _failed_pass(self, exc: Exception, errors: int) -> None:
        backoff = min(_BACKOFF_MAX_S, 0.1 * 2 ** (errors - 1))
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            log.warning("fetch failed: redis unreachable", error=str(exc), retry_in_s=backoff)
        elif isinstance(exc, NotAcknowledged):  # replicas behind: nothing starts meanwhile
            log.warning("fetch not replicated", error=str(exc), retry_in_s=backoff)
        else:
            log.exception("fetch failed", retry_in_s=backoff)
        with contextlib.suppress(OSError):  # the parent is gone: we die with it
            self.send(LoopFailed("fetch", f"{type(exc).__name__}: {exc}"[:500]))
        until = time.monotonic() + backoff
        while not self._stop_asked() and time.monotonic() < until:
            time.sleep(min(0.2, until - time.monotonic()))

    def _send_stats(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._stats_sent_at < _STATS_EVERY_S:
            return
        news = self.counts.news()
        if news is not None:
            self._stats_sent_at = now
            self.send(news)

    # -- one attempt -----------------------------------------------------------------------
    def _run(self, record: Claim, slot: int = 0) -> int:
        """Run one claimed attempt to its recorded outcome here, on this thread; returns an
        exit code (0: go on). In a context of its own: what the job binds (structlog's
        contextvars, its own) ends with it, never reaching the next request's lines."""
        return contextvars.copy_context().run(self._run_here, record, slot)

    def _run_here(self, record: Claim, slot: int) -> int:
        with self.log_context(record):
            attempt = self.begin(record, slot)
            try:
                output = self._execute(attempt)
            except BaseException as exc:  # noqa: BLE001 - the job's failure is data
                return self.end(attempt, exc)
            return self.end(attempt, output)

    def log_context(self, record: Claim, **extra: Any) -> contextlib.AbstractContextManager[Any]:
        """Every log line while an attempt runs (ours and the job's, structlog or logging)
        names it, as the API's and the webhook sender's lines do: ``grep REQUEST_ID`` over
        all processes tells its story."""
        return structlog.contextvars.bound_contextvars(
            request_id=record.request_id,
            app=record.app,
            job=record.job,
            attempt=record.attempt,
            worker=self.config.worker,
            device=self.devices or None,
            **extra,
        )

    def begin(self, record: Claim, slot: int) -> Attempt:
        """Show the attempt on the board (its lease renewed, its timeout watched) and make
        its context."""
        spec = self.app.jobs.get(record.job)
        self.memory.apply(self.memory_limit_of(spec))
        self.show(slot, record, record.timeout_under(spec))
        output_dir = self._output_dir(record, spec)
        ctx = self._context(record, output_dir)
        self._running[id(ctx)] = ctx
        self.watch_memory(ctx)
        return Attempt(record, spec, slot, ctx, output_dir, time.monotonic())

    def memory_limit_of(self, spec: JobSpec | None) -> int | None:
        return memory_limit_for(spec, self.config.memory_default)

    def watch_memory(self, ctx: JobContext) -> None:
        """Note the cgroup's OOM kills as an attempt (or a batch) starts: more when it
        ends means it met its limit. A file read: only where a limit is in force."""
        if self.memory.current is not None:
            self._oom_kills_at[id(ctx)] = self.memory.oom_kills()

    def show(
        self, slot: int, claim: Claim, timeout_s: float | None, phase: Phase = Phase.RUNNING
    ) -> None:
        """Put the claim's attempt on the board at ``slot``: its lease is renewed from now
        on, and ``timeout_s`` (None: none yet) watched."""
        self.board.start(
            slot,
            claim.request_id,
            claim.attempt,
            claim.token,
            self.job_index(claim.job),
            timeout_s,
            phase=phase,
        )

    def job_index(self, job: str) -> int:
        """A job's number on the board (the parent counts running attempts by it)."""
        return self._job_index.get(job, -1)

    def end(
        self,
        attempt: Attempt,
        result: EncodedOutput | BaseException,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Record how the attempt ended, then free its place; returns an exit code.
        ``extra``: more fields for a success's record."""
        record, spec = attempt.record, attempt.spec
        poisoned = False
        try:
            if isinstance(result, AttemptLost):
                log.warning("attempt abandoned: its lease is gone", request_id=record.request_id)
                return 0
            # Ending first: no timeout can strike a job that has returned while this process
            # counts it (a GPU memory probe may take a while); then the count, which may
            # say this process leaves, before the finish that would take more work.
            self.board.ending(attempt.slot)
            self._count_job()
            if isinstance(result, BaseException):
                failure = (
                    describe_failure(result, spec)
                    if spec is not None
                    else _unknown_job(self.app, record.job)
                )
                limit = self.memory.current
                if self._out_of_memory(attempt, result):
                    message = out_of_memory_message(limit)
                    failure = oom_failure(self.app, record.job, message, failure.traceback)
                    log.warning("attempt out of memory", error=message)
                poisoned = poisons_cuda_context(result)
                self._leaving = self._leaving or poisoned
                self._record(self.endings.failed, record, failure, extra)
            else:
                self._record(self.endings.succeeded, record, result, attempt.output_dir, extra)
        finally:
            self._oom_kills_at.pop(id(attempt.ctx), None)
            self._running.pop(id(attempt.ctx), None)
            self.board.clear(attempt.slot)
            self.counts.ran(record.app, record.job, time.monotonic() - attempt.started)
            if attempt.output_dir is not None:
                shutil.rmtree(attempt.output_dir, ignore_errors=True)
        if poisoned:
            log.warning("cuda context poisoned; this process will be replaced")
            return EXIT_POISONED
        return EXIT_RECYCLE if self._recycled else 0

    def _out_of_memory(self, attempt: Attempt, exc: BaseException) -> bool:
        """Whether the attempt failed for its memory limit: a MemoryError under one, or an
        OOM kill in its cgroup while it ran (a helper's: the job saw it die). A process that
        met its limit is replaced after this job (its heap may be left fragmented)."""
        if self.memory.current is None:
            return False
        killed = self.memory.oom_kills() > self._oom_kills_at.get(id(attempt.ctx), 0)
        if isinstance(exc, MemoryError) and not killed:
            # Leave after this job, and lift the limit now: writing the outcome must not
            # meet it (the failed job's memory may still be held through its traceback).
            self._recycled = self._leaving = True
            self.memory.apply(None)
            return True
        return killed

    def _record(self, write: Callable[..., None], *args: Any) -> None:
        """Write an outcome; one Redis would not take (for the whole outcome budget, or a
        bug) is logged, never a crash of this process: the lease then runs out and recovery
        runs the request again."""
        try:
            write(*args)
        except Exception:  # noqa: BLE001 - the process serves on; recovery owns the request
            log.exception("outcome not recorded; the request will be recovered and run again")

    def end_together(self, done: list[tuple[Attempt, EncodedOutput, dict[str, Any]]]) -> int:
        """Record several successes (a batch's) in one script, then free their places;
        returns an exit code."""
        for attempt, _, _ in done:
            self.board.ending(attempt.slot)
        self._count_job(len(done))
        try:
            self._record(
                self.endings.succeeded_together, [(a.record, out, extra) for a, out, extra in done]
            )
        finally:
            for attempt, _, _ in done:
                self._running.pop(id(attempt.ctx), None)
                self.board.clear(attempt.slot)
                self.counts.ran(
                    attempt.record.app, attempt.record.job, time.monotonic() - attempt.started
                )
        return EXIT_RECYCLE if self._recycled else 0

    def _count_job(self, n: int = 1) -> None:
        """Count finished jobs; when recycling says this process is done, its finish takes
        no more work and it exits once idle. The GPU memory probe runs outside the lock, so
        lanes finishing at once do not queue behind it."""
        with self._jobs_lock:
            self._jobs_done += n
            for _ in range(n):
                self.board.job_done()
            if self._recycled:
                return
            done = self._jobs_done
        why = self.recycling.reason(done, os.getpid())
        if why is not None:
            with self._jobs_lock:
                if not self._recycled:
                    log.info("child will be replaced", reason=why)
                    self._recycled = self._leaving = True

    def _output_dir(self, record: Claim, spec: JobSpec | None) -> Path | None:
        """A fresh directory, only for jobs that can see it (they take a JobContext)."""
        if spec is None or not (spec.signature.context_param or spec.upload):
            return None
        base = self.config.outputs
        return Path(tempfile.mkdtemp(prefix=f"{record.request_id}-{record.attempt}-", dir=base))

    def _context(self, record: Claim, output_dir: Path | None) -> JobContext:
        rid, token = record.request_id, record.token
        fence = Fence(rid, record.attempt)
        return JobContext(
            request_id=rid,
            attempt=record.attempt,
            app=self.app.name,
            job=record.job,
            output_dir=output_dir or Path(),
            state=self.state,
            devices=self.devices,
            _report=lambda f, m: self._progress(rid, token, f, m),
            _waiting=lambda on: self.send(Waiting(fence, on)),
        )

    def _execute(self, attempt: Attempt) -> EncodedOutput:
        record, spec = attempt.record, attempt.spec
        if spec is None:
            raise LookupError(f"this consumer's app has no job {record.job!r}")
        data = self.input_of(record)
        if spec.stream:
            invoke(spec, data, attempt.ctx, on_item=self.relay(attempt))
            return EncodedOutput(JSON_TYPE, b"null")
        return encode_output(spec.signature, invoke(spec, data, attempt.ctx))

    def relay(self, attempt: Attempt) -> Callable[[Any], None]:
        """Where a streaming job's items go: one fenced write each, in order."""
        record, spec = attempt.record, attempt.spec
        assert spec is not None

        def send(item: Any) -> None:
            data = encode_output(spec.signature, item).data
            if not self.endings.append_chunk(record.request_id, record.token, data):
                raise AttemptLost(record.request_id)

        return send

    def input_of(self, record: Claim) -> Any:
        if record.input_ref is not None:  # a large binary input, in the result store
            return unpack(self._result_store().get_bytes(record.input_ref))
        if record.input_format == "msgpack":  # bytes or arrays: raw, beside the record
            return unpack(self.store.input_bytes(record.request_id))
        return record.input

    def _progress(
        self,
        rid: str,
        token: str,
        fraction: float,
        message: str | None,
        *,
        quiet_lost: bool = False,
    ) -> None:
        """``quiet_lost``: a refused write is no reason to stop (one canceled member of a
        batch must not stop the call for the others)."""
        try:
            written = self.store.report_progress(rid, token, fraction, message)
        except redis.RedisError as exc:  # progress is a courtesy: the job goes on
            log.warning("progress not recorded", request_id=rid, error=str(exc))
            return
        if not written and not quiet_lost:
            raise AttemptLost(rid)


def _unknown_job(app: AppRegistry, job: str) -> JobFailure:
    return JobFailure(
        error_type="UnknownJob",
        message=f"this consumer's app {app.name!r} has no job {job!r}",
        traceback="",
        retryable=False,
        error_module="",
    )
