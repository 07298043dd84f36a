"""Batched jobs: one call of the function for many waiting requests.

A job declared ``max_batch_size=N, batch_wait_ms=W`` waits on a queue of its own. When a
child claims one of its requests it claims more of them at once, up to N, waiting at most W
after the first (priorities still order what is taken, and a lone request is never held
longer than W). Each member holds its own lease and board entry from its claim on; the call
gets lists, and returns one output per member, in order.

Every member keeps its own outcome: an exception *returned* in the output list fails that
member alone; one raised fails (or retries) each by its own policy; a timeout ends each
member whose own timeout passed TIMED_OUT (the process is killed, and a member whose timeout
had not passed yet goes back, uncounted); a cancel ends that member only, and what the call
returns for it is refused.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import TYPE_CHECKING, Any

import structlog

from jobcord.scheduler.context import JobContext, running_job
from jobcord.scheduler.jobspec import JobSpec
from jobcord.scheduler.outputs import EncodedOutput, encode_output

from .board import Phase
from .claim import Claim
from .flow import FLOW, Attempt, Flow
from .protocol import Fence, Waiting

if TYPE_CHECKING:
    from .attempts import ChildConsumer

__all__ = ["BatchRun"]

log = structlog.get_logger("jobcord.batches")

#: One wait for more members lasts at most this (the child looks at its stop flag between).
_WAIT_SLICE_S = 0.5
#: Waits longer than this block on the queue's wake-ups; shorter ones poll every _POLL_S.
_BLOCKING_WAIT_S = 0.25
_POLL_S = 0.001


class BatchRun:
    def __init__(self, consumer: ChildConsumer) -> None:
        self.c = consumer

    def run(self, spec: JobSpec, first: Claim) -> int:
        """Gather a batch that starts with ``first``, call the job once, end every member.
        Returns an exit code (0: go on)."""
        width = min(spec.max_batch_size, self.c.board.width)
        members = [first]
        self.c.show(0, first, None, Phase.BATCH)  # leased from its claim, no timeout yet
        opened = time.monotonic()
        until = opened + spec.batch_wait_s
        while len(members) < width and not self.c._stop_asked():
            try:
                got = self.c.fetcher.fetch(width - len(members), queues=[spec.queue])
            except Exception as exc:  # noqa: BLE001 - run with what it has
                log.warning("fetch for a batch failed", job=spec.name, error=str(exc))
                break
            for lease, fields in got:
                claim = Claim.from_fields(lease, fields)
                self.c.show(len(members), claim, None, Phase.BATCH)
                members.append(claim)
            left = until - time.monotonic()
            if len(members) >= width or left <= 0:
                break
            if not got:
                self._wait(spec, left)
        waited = time.monotonic() - opened
        self.c.counts.observe("batch_size", spec.app, spec.name, len(members))
        self.c.counts.observe("batch_wait", spec.app, spec.name, waited)
        closed = FLOW.set(Flow(closed=True))  # members' finishes take no more work
        # The batch's lines name the first request and list them all (grep finds any).
        batch = [m.request_id for m in members]
        try:
            with self.c.log_context(first, batch=batch):
                return self._call(spec, members)
        finally:
            FLOW.reset(closed)

    def _wait(self, spec: JobSpec, left_s: float) -> None:
        """Wait for more members. Redis times a blocked command out on its own clock (100 ms
        steps at the default hz), so a short wait polls instead: a few fetches a batch,
        against a lone request held up to 100 ms."""
        if left_s > _BLOCKING_WAIT_S:
            self.c.fetcher.wait_for_work(min(left_s - _POLL_S, _WAIT_SLICE_S), queues=[spec.queue])
        else:
            time.sleep(min(left_s, _POLL_S))

    def _call(self, spec: JobSpec, members: list[Claim]) -> int:
        started = time.monotonic()
        self.c.memory.apply(self.c.memory_limit_of(spec))
        for slot, m in enumerate(members):  # each member's own timeout, from the call on
            self.c.show(slot, m, m.timeout_under(spec), Phase.BATCH)
        ctx = self._context(spec, members)
        self.c.watch_memory(ctx)
        code = 0
        valid: list[tuple[Attempt, dict[str, Any]]] = []
        for slot, m in enumerate(members):
            attempt = Attempt(m, spec, slot, ctx, None, started)
            try:
                valid.append((attempt, spec.signature.typed_kwargs(self.c.input_of(m))))
            except BaseException as exc:  # noqa: BLE001 - this member's input: its failure
                code = code or self.c.end(attempt, exc)
        if not valid:
            return code
        try:
            outputs = self._invoke(spec, ctx, [kwargs for _, kwargs in valid])
        except BaseException as exc:  # noqa: BLE001 - the call's failure is each member's
            for attempt, _ in valid:
                code = self.c.end(attempt, exc) or code
            return code
        done: list[tuple[Attempt, EncodedOutput, dict[str, Any]]] = []
        for (attempt, _), out in zip(valid, outputs, strict=True):
            extra = {"batch_size": len(members), "batch_position": attempt.slot}
            if isinstance(out, BaseException):  # returned for this member: its failure alone
                code = self.c.end(attempt, out, extra) or code
                continue
            try:
                done.append((attempt, encode_output(spec.signature, out), extra))
            except BaseException as exc:  # noqa: BLE001 - an output that will not encode
                code = self.c.end(attempt, exc, extra) or code
        if done:  # the successes end in one script
            code = self.c.end_together(done) or code
        return code

    def _invoke(self, spec: JobSpec, ctx: JobContext, items: list[dict[str, Any]]) -> list[Any]:
        lists: dict[str, list[Any]] = {name: [] for name in spec.signature.parameters}
        for kwargs in items:
            for name in lists:
                lists[name].append(kwargs[name])
        call: dict[str, Any] = dict(lists)
        if spec.signature.context_param:
            call[spec.signature.context_param] = ctx
        with running_job(ctx):
            value = spec.fn(**call)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
        outputs = list(value)
        if len(outputs) != len(items):
            raise ValueError(
                f"batched job {spec.name!r} returned {len(outputs)} outputs for "
                f"{len(items)} inputs (one per input, in order)"
            )
        return outputs

    def _context(self, spec: JobSpec, members: list[Claim]) -> JobContext:
        """The call's context: its first member's identity (requests the job makes are that
        one's children), progress reported to every member, the process's startup state."""
        first = members[0]
        fence = Fence(first.request_id, first.attempt)

        def progress(fraction: float, message: str | None) -> None:
            for m in members:
                self.c._progress(m.request_id, m.token, fraction, message, quiet_lost=True)

        return JobContext(
            request_id=first.request_id,
            attempt=first.attempt,
            app=self.c.app.name,
            job=spec.name,
            output_dir=self.c.outputs_dir,
            state=self.c.state,
            devices=self.c.devices,
            _report=progress,
            _waiting=lambda on: self.c.send(Waiting(fence, on)),
        )
