"""Many requests of one job in one process at once: the job declared ``concurrency=N``.

A shared run starts from one claimed attempt of such a job and keeps up to N *lanes* busy,
each on its own board entry (its own lease, timeout and fence). A lane runs an attempt, and
its finish takes the next one of the same job in the same round trip (the job waits on a
queue of its own); the dispatcher here fills free lanes from that queue and otherwise waits
on its wake-ups. Lanes are threads for a plain function, tasks on one event loop for an
``async def`` one (so that an engine batching internally sees every request). After a time
slice (or when asked to stop) lanes take nothing new; once all are done the child's loop
looks at every queue again, so other jobs of the class are never shut out.

Killing the process (a timeout, a cancel) takes every lane with it: the supervisor records
the stopped attempt's outcome and hands the others back uncounted (preempted).
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import structlog

from jobcord.scheduler.invoke import ainvoke
from jobcord.scheduler.jobspec import JobSpec
from jobcord.scheduler.outputs import encode_output

from .claim import Claim
from .flow import FLOW, Flow

if TYPE_CHECKING:
    from .attempts import ChildConsumer

__all__ = ["SharedRun", "SLICE_S"]

log = structlog.get_logger("jobcord.lanes")

#: How long a shared run takes new work before the child looks at its other queues.
SLICE_S = 1.0
#: With lanes free and the job's queue empty, how long one wait for new work lasts.
_REFILL_WAIT_S = 0.05


class SharedRun:
    def __init__(self, consumer: ChildConsumer) -> None:
        self.c = consumer
        self._threads: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- the dispatcher -------------------------------------------------------------------
    def run(self, spec: JobSpec, first: Claim) -> int:
        """Run ``first`` and as many more of ``spec`` as come, up to ``spec.concurrency`` at
        once, until its queue is empty or the slice is over. Returns an exit code."""
        width = min(spec.concurrency, self.c.board.width)
        free = list(range(width - 1, -1, -1))
        ended: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()  # (slot, exit code)
        flows: list[Flow] = []
        deadline = time.monotonic() + SLICE_S
        code, active = 0, 0

        def start(claim: Claim) -> None:
            nonlocal active
            slot = free.pop()
            flow = Flow(queues=[spec.queue], until=deadline)
            flows.append(flow)
            active += 1

            def done(lane: Future[int]) -> None:
                ended.put((slot, _code_of(lane)))

            self._lane(spec, claim, slot, flow).add_done_callback(done)

        def reap(block: bool) -> None:
            """Take note of the lanes that ended (waiting for one first if ``block``)."""
            nonlocal active, code
            while active:
                try:
                    slot, lane_code = ended.get(timeout=0.1) if block else ended.get_nowait()
                except queue.Empty:
                    return
                block = False
                active -= 1
                free.append(slot)
                code = code or lane_code

        start(first)
        while active:
            reap(block=False)
            if code or time.monotonic() >= deadline or self._stop():
                for flow in flows:  # lanes finish what they hold and take nothing more
                    flow.closed = True
                reap(block=True)
                continue
            if not free:
                reap(block=True)
                continue
            try:
                claims = self.c.fetcher.fetch(len(free), queues=[spec.queue])
                if not claims:
                    self.c.fetcher.wait_for_work(_REFILL_WAIT_S, queues=[spec.queue])
            except Exception as exc:  # noqa: BLE001 - lanes run on; so does the dispatcher
                log.warning("fetch for a shared job failed", job=spec.name, error=str(exc))
                time.sleep(_REFILL_WAIT_S)
                continue
            for token, fields in claims:
                start(Claim.from_fields(token, fields))
        return code

    def _stop(self) -> bool:
        return self.c._stop_asked() or self.c.parent_stuck()

    # -- lanes --------------------------------------------------------------------------------
    def _lane(self, spec: JobSpec, claim: Claim, slot: int, flow: Flow) -> Future[int]:
        if inspect.iscoroutinefunction(spec.fn):
            return asyncio.run_coroutine_threadsafe(
                self._async_lane(spec, claim, slot, flow), self._event_loop()
            )
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                self.c.board.width, thread_name_prefix="jobcord-lane"
            )
        return self._threads.submit(self._thread_lane, claim, slot, flow)

    def _thread_lane(self, claim: Claim | None, slot: int, flow: Flow) -> int:
        FLOW.set(flow)
        code = 0
        while claim is not None and not code:
            code = self.c._run(claim, slot)
            claim = _taken(flow)
        return code

    async def _async_lane(self, spec: JobSpec, claim: Claim | None, slot: int, flow: Flow) -> int:
        FLOW.set(flow)  # this task's own context; to_thread carries it to the finish
        code = 0
        while claim is not None and not code:
            # A task per attempt: its own context (what the job binds ends with it).
            code = await asyncio.create_task(self._async_attempt(spec, claim, slot))
            claim = _taken(flow)
        return code

    async def _async_attempt(self, spec: JobSpec, claim: Claim, slot: int) -> int:
        with self.c.log_context(claim):
            attempt = self.c.begin(claim, slot)
            result: Any
            try:
                data = await asyncio.to_thread(self.c.input_of, claim)
                result = encode_output(spec.signature, await ainvoke(spec, data, attempt.ctx))
            except BaseException as exc:  # noqa: BLE001 - the job's failure is data
                result = exc
            return await asyncio.to_thread(self.c.end, attempt, result)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """One loop per process for every async lane (started on first use)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="jobcord-loop", daemon=True).start()
            self._loop = loop
        return self._loop


def _taken(flow: Flow) -> Claim | None:
    """What the lane's last finish took (its next attempt), if anything."""
    claims, flow.claims = flow.claims, None
    if not claims:
        return None
    token, fields = claims[0]
    return Claim.from_fields(token, fields)


def _code_of(future: Future[int]) -> int:
    try:
        return future.result()
    except BaseException:  # noqa: BLE001 - a lane that broke: replace the process
        log.exception("a lane broke")
        return 1
