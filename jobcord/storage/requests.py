"""RequestStore: every change to a request record, each one atomic Lua script.

The record (``jobcord.storage.keys``) is the source of truth; a broker message carries only the
request id and attempt, and is written by the same script that changes the record, so a
request can never be QUEUED without a message, nor have a message without a record.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from . import durability, keys
from .connection import raw_twin
from .direct import as_dict, stream_entries
from .errors import (
    IdempotencyConflict,
    NotAcknowledged,
    NotRetryable,
    RequestNotFound,
    TooManyRequests,
)
from .records import RequestRecord
from .scripts import Scripts
from .settings import Settings
from .statuses import TERMINAL_STATUSES, Status

__all__ = [
    "FIRST_EVENT_ID",
    "InlineOutput",
    "RequestStore",
    "NewRequest",
    "Submission",
    "StatusEvent",
    "first_queued_event",
    "is_legacy_first_event",
]


@dataclass(frozen=True)
class NewRequest:
    """What a producer submits (input already validated and JSON-encoded)."""

    request_id: str
    app: str
    job: str
    queue: str
    input_json: str
    #: What a repeat with the same idempotency key must match ("" without a key).
    input_hash: str = ""
    #: A binary input (msgpack), kept beside the record; ``input_json`` is then "null".
    input_bin: bytes | None = None
    #: Or, when large, its key in the result store.
    input_ref: str | None = None
    priority: int = 1
    timeout_s: float | None = None
    max_retries: int = 0
    max_queue_s: float | None = None
    delay_s: float | None = None
    #: Or hold it back until then (epoch s, on Redis's clock: the submit script compares).
    start_at: float | None = None
    idempotency_key: str | None = None
    webhook_endpoint: str | None = None
    #: Or a dramatiq actor to send the finished request to (a ``CompletionTarget`` as JSON).
    on_complete: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    #: Refuse (TooManyRequests) when the app has this many requests queued or running; 0: no cap.
    max_in_flight: int = 0
    #: The request whose job submitted this one: linked both ways, canceled with it.
    parent_id: str | None = None
    #: Only a consumer running this version of the job takes it (JobSpec.job_version).
    job_version: str | None = None


@dataclass(frozen=True)
class InlineOutput:
    """A SUCCEEDED request's output as its terminal event carries it (JSON text)."""

    json: str


@dataclass(frozen=True)
class Submission:
    request_id: str
    created: bool  # False: an earlier request with the same idempotency key and input


@dataclass(frozen=True)
class StatusEvent:
    stream_id: str
    status: Status
    at: float
    attempt: int
    fields: dict[str, str]


#: The stream id given to the unstored first QUEUED event: below any id Redis makes.
FIRST_EVENT_ID = "0-1"


def first_queued_event(created_at: float) -> StatusEvent:
    fields = {"status": Status.QUEUED.value, "at": repr(created_at), "attempt": "1"}
    return StatusEvent(FIRST_EVENT_ID, Status.QUEUED, created_at, 1, fields)


def is_legacy_first_event(data: dict[str, str]) -> bool:
    """The first QUEUED as earlier versions stored it (every later QUEUED has a reason)."""
    return data.get("status") == "QUEUED" and data.get("attempt") == "1" and "reason" not in data


class RequestStore:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.scripts = Scripts(client, functions=settings.redis_functions)
        self._retention = int(settings.record_retention_s)
        self._raw: redis.Redis | None = None  # for binary values (created on first use)
        # Lease tokens: unique per fetch without drawing a UUID each time.
        self._token_base = uuid.uuid4().hex[:16] + "-"
        self._fetches = itertools.count(1)

    def _run(self, name: str, *args: Any) -> Any:
        return self.scripts(name, *args)

    # -- producers -----------------------------------------------------------------------
    def submit(self, req: NewRequest) -> Submission:
        args = self._submit_args(req, self._fields(req))
        wait = durability.wait_command(self.settings)
        if wait is None:
            return self.submitted(req, self._run("submit", *args))
        reply, acked = self.scripts.call_then("submit", wait, *args)
        submission = self.submitted(req, reply)  # a conflict or a full app: said as such
        durability.check(self.settings, acked)
        return submission

    def submit_command(self, req: NewRequest) -> tuple[Any, ...]:
        """The submit script's call as one command, for a caller with a connection of its own
        (the gateway's event loop); its reply goes to :meth:`submitted`. None of it is sent
        here."""
        return self.scripts.command("submit", tuple(self._submit_args(req, self._fields(req))))

    def _fields(self, req: NewRequest) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "app": req.app,
            "job": req.job,
            "input": req.input_json,
            "max_retries": req.max_retries,
        }
        # Fields a small queued request does without (~1 KiB of Redis each is the budget):
        # the input hash lives in the idempotency key; no webhook_status field reads NONE.
        optional = {
            "timeout_s": req.timeout_s,
            "idempotency_key": req.idempotency_key,
            "webhook_endpoint": req.webhook_endpoint,
            "on_complete": json.dumps(req.on_complete) if req.on_complete is not None else None,
            "webhook_status": "PENDING" if req.webhook_endpoint or req.on_complete else None,
            "metadata": json.dumps(req.metadata) if req.metadata is not None else None,
            "parent_id": req.parent_id,
            "input_ref": req.input_ref,
            "job_version": req.job_version,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        return fields

    def _submit_args(self, req: NewRequest, fields: dict[str, Any]) -> list[Any]:
        idem = keys.idempotency_key(req.app, req.idempotency_key) if req.idempotency_key else ""
        flat = [x for pair in fields.items() for x in pair]
        return [
            req.request_id,
            idem,
            req.input_hash,
            int(self.settings.idempotency_retention_s),
            req.queue,
            req.max_queue_s or 0,
            req.delay_s or 0,
            req.max_in_flight,
            req.input_bin or b"",
            self.settings.recent_requests_per_app,
            req.priority,
            "" if req.start_at is None else repr(float(req.start_at)),
            *flat,
        ]

    def submitted(self, req: NewRequest, reply: Any) -> Submission:
        """What a submit script's reply means (raises for a conflict or a full app)."""
        outcome, request_id = reply
        if outcome == "conflict":
            raise IdempotencyConflict(req.idempotency_key or "", request_id)
        if outcome == "busy":
            raise TooManyRequests(
                f"app {req.app!r} has {request_id} requests queued or running, its cap is "
                f"{req.max_in_flight}; try again when some have finished",
                retry_after_s=1.0,
            )
        return Submission(request_id=request_id, created=outcome == "created")

    def input_bytes(self, request_id: str) -> bytes:
        """A binary input (msgpack), read without decoding."""
        if self._raw is None:
            self._raw = raw_twin(self.client)
        data: Any = self._raw.get(keys.input_key(request_id))
        if data is None:
            raise RequestNotFound(request_id)
        return bytes(data)

    def children_tree(
        self, request_id: str, *, depth: int = 4, limit: int = 500
    ) -> list[dict[str, Any]]:
        """The requests this one's job made, in order, each with its status and its own
        children: ``depth`` levels, ``limit`` requests in all, two round trips a level."""
        root: list[dict[str, Any]] = []
        level = [(request_id, root)]
        seen = 0
        for _ in range(depth):
            pipe = self.client.pipeline(transaction=False)
            for rid, _into in level:
                pipe.zrange(keys.children_key(rid), 0, limit - 1)
            found = [(into, ids) for (_rid, into), ids in zip(level, pipe.execute(), strict=True)]
            pairs = [(into, child) for into, ids in found for child in ids][: limit - seen]
            if not pairs:
                break
            seen += len(pairs)
            pipe = self.client.pipeline(transaction=False)
            for _into, child in pairs:
                pipe.hmget(keys.record_key(child), "job", "status", "attempt", "error")
            level = []
            for (into, child), (job, status, attempt, error) in zip(
                pairs, pipe.execute(), strict=True
            ):
                node: dict[str, Any] = {
                    "request_id": child,
                    "job": job,
                    "status": status or "GONE",  # expired from Redis after its retention
                    "attempt": int(attempt) if attempt else None,
                    "error": json.loads(error).get("type") if error else None,
                    "children": [],
                }
                into.append(node)
                if status:
                    level.append((child, node["children"]))
        return root

    def cancel(self, request_id: str) -> Status:
        """Cancel a queued request now, or ask its worker to stop a running one."""
        outcome, status = self._run("cancel", request_id, self._retention)
        if outcome == "missing":
            raise RequestNotFound(request_id)
        return Status(status)

    def get(self, request_id: str) -> RequestRecord:
        raw = as_dict(self.scripts.direct("HGETALL", keys.record_key(request_id)))
        if not raw:
            raise RequestNotFound(request_id)
        return RequestRecord.from_hash(raw)

    def events(
        self, request_id: str, *, after: str = "0-0", block_s: float | None = None
    ) -> list[StatusEvent]:
        """Status events after stream id ``after``; waits up to ``block_s`` for a first one.

        The first QUEUED is not stored (a one-entry stream costs ~4.5 KB of Redis for every
        queued request): read from the start, it comes from the record's ``created_at``."""
        out: list[StatusEvent] = []
        if after == "0-0":
            created_at = self.client.hget(keys.record_key(request_id), "created_at")
            if created_at is not None:
                out.append(first_queued_event(float(created_at)))
                after, block_s = FIRST_EVENT_ID, None  # something to return: no wait
        block = None if block_s is None else max(1, int(block_s * 1000))
        reply: Any = self.client.xread({keys.events_key(request_id): after}, block=block)
        for _stream, entries in reply or []:
            for stream_id, data in entries:
                if is_legacy_first_event(data):
                    continue
                out.append(
                    StatusEvent(
                        stream_id=stream_id,
                        status=Status(data["status"]),
                        at=float(data["at"]),
                        attempt=int(data["attempt"]),
                        fields=data,
                    )
                )
        return out

    def follow(self, request_id: str, *, timeout_s: float | None) -> Iterator[StatusEvent]:
        """Yield status events as they happen (blocking reads, no polling) until terminal."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        after = "0-0"
        while True:
            if deadline is None:
                block = 5.0
            else:
                block = deadline - time.monotonic()
                if block <= 0:
                    return
            batch = self.events(request_id, after=after, block_s=min(block, 5.0))
            for ev in batch:
                after = ev.stream_id
                yield ev
                if ev.status in TERMINAL_STATUSES and self._is_final(request_id, ev.attempt):
                    return
            if not batch and not self.client.exists(keys.record_key(request_id)):
                raise RequestNotFound(request_id)

    def wait_terminal(
        self,
        request_id: str,
        *,
        timeout_s: float | None,
        inline_output: bool = False,
    ) -> tuple[RequestRecord | InlineOutput | None, Status]:
        """Block until the request is terminal: (its record, its status), or (None, the last
        status seen) after ``timeout_s``. The sync path's few round trips: blocking reads of
        the event stream from its start (an ended request's terminal event is there at once),
        then one read of the record, which also checks that no rerun started since. With
        ``inline_output``, a success whose small output rode on its event returns that
        (:class:`InlineOutput`) without reading the record."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # Nothing stored yet means QUEUED: the first QUEUED event is never stored.
        stream, after, last = keys.events_key(request_id), "0-0", Status.QUEUED
        entries: list[tuple[str, dict[str, str]]] = []
        looked = False  # timeout 0 (or one that ran out on the way) still looks once
        while True:
            if not entries:
                block_s = 5.0 if deadline is None else min(5.0, deadline - time.monotonic())
                if block_s <= 0 and looked:
                    return None, last
                looked = True
                wait = ("BLOCK", max(1, int(block_s * 1000))) if block_s > 0 else ()
                entries = stream_entries(
                    self.scripts.direct("XREAD", *wait, "STREAMS", stream, after)
                )
                if not entries:
                    if not self.client.exists(keys.record_key(request_id)):
                        raise RequestNotFound(request_id)
                    continue
            ended = False
            for stream_id, data in entries:
                after, last = stream_id, Status(data["status"])
                ended = last.is_terminal
            entries = []
            if ended and inline_output and last is Status.SUCCEEDED and "output" in data:
                return InlineOutput(data["output"]), last
            if ended:
                record = self.get(request_id)
                if record.status.is_terminal:
                    return record, record.status
                last = record.status  # run again since (a rerun): read on

    def _is_final(self, request_id: str, attempt: int) -> bool:
        """A terminal event is the end unless the request was run again since (a retry)."""
        reply: Any = self.client.hmget(keys.record_key(request_id), ["status", "attempt"])
        status, current = reply
        return status is None or (Status(status).is_terminal and int(current) == attempt)

    # -- consumers -----------------------------------------------------------------------
    def claim(
        self, request_id: str, attempt: int, worker: str, token: str
    ) -> tuple[str, RequestRecord | None]:
        """Start an attempt. Returns ("claimed", record) | ("expired"|"stale"|"missing", None)."""
        reply = self._run(
            "claim", request_id, attempt, worker, token, self.settings.lease_ttl_s, self._retention
        )
        if reply[0] != "claimed":
            return reply[0], None
        return "claimed", RequestRecord.from_hash(_claimed(reply[1:], worker, token))

    def fetch(
        self,
        queues: Sequence[tuple[str, int]],
        worker: str,
        device: str = "",
        *,
        n: int = 1,
        lowest_first: bool = False,
        runs: str = "",
    ) -> list[tuple[str, dict[str, str]]]:
        """Take up to ``n`` messages from ``queues`` ((name, min age in ms) in order) and start
        their attempts, in one script, on ``worker`` and its ``device`` (GPU UUIDs, "" for
        CPU). ``runs`` (``"job=version,..."``, see ``AppRegistry.runs``): a request of another
        version of its job is set aside for the consumers that run that one, not started.
        Returns (lease token, record fields) per attempt."""
        args = self._fetch_args(queues, worker, device, n, lowest_first, runs)
        reply, acked = self._run_confirmed("fetch", self._retention, *args)
        claims = [(flat[0], _claimed(flat[2:], worker, flat[0], device)) for flat in reply]
        held = self._unconfirmed(claims, acked)
        if held is not None:
            raise NotAcknowledged(f"claims not replicated in time ({held}); handed back")
        return claims

    def _run_confirmed(self, name: str, *args: Any) -> tuple[Any, Any]:
        """Run a script, followed (when acknowledgements are on) by its WAIT in one write."""
        wait = durability.wait_command(self.settings)
        if wait is None:
            return self._run(name, *args), None
        return self.scripts.call_then(name, wait, *args)

    def _unconfirmed(self, claims: list[tuple[str, dict[str, str]]], acked: Any) -> str | None:
        """None when ``claims`` may start; else what replication lacks, once each is handed
        back to the front of its queue, unstarted and uncounted (see storage.durability)."""
        if not claims or durability.wait_command(self.settings) is None:
            return None
        held = durability.shortfall(self.settings, acked)
        if held is None:
            return None
        error = {"type": "NotReplicated", "message": f"fetch not replicated: {held}"}
        for token, fields in claims:
            self.retry(
                fields["id"], token, delay_s=0, counter="preemptions", error=error,
                reason="waiting for replicas",
            )  # fmt: skip
        return held

    def finish_many(self, endings: Sequence[tuple[str, str, Status, dict[str, Any]]]) -> list[bool]:
        """:meth:`finish` for several attempts (request id, token, status, fields) in one
        script: a batch's members. Whether each was still its attempt's, in order."""
        args: list[Any] = [self._retention, len(endings)]
        for request_id, token, status, fields in endings:
            flat = [x for k, v in fields.items() if v is not None for x in (k, _encode(v))]
            args += [request_id, token, status.value, len(flat), *flat]
        return [reply == "ok" for reply in self._run("finish_many", *args)]

    def finish_next(
        self,
        request_id: str,
        token: str,
        status: Status,
        fields: dict[str, Any],
        queues: Sequence[tuple[str, int]],
        worker: str,
        device: str = "",
        *,
        n: int = 1,
        lowest_first: bool = False,
        runs: str = "",
    ) -> tuple[bool, list[tuple[str, dict[str, str]]]]:
        """:meth:`finish`, then :meth:`fetch`, in one round trip (a consumer's steady state).
        Returns (finished, claims)."""
        flat = [x for k, v in fields.items() if v is not None for x in (k, _encode(v))]
        (outcome, claims), acked = self._run_confirmed(
            "finish_next",
            self._retention,
            request_id,
            token,
            status.value,
            len(flat),
            *flat,
            *self._fetch_args(queues, worker, device, n, lowest_first, runs),
        )
        got = [(c[0], _claimed(c[2:], worker, c[0], device)) for c in claims]
        if self._unconfirmed(got, acked) is not None:
            got = []  # handed back; the next plain fetch says why
        return outcome == "ok", got

    def _fetch_args(
        self,
        queues: Sequence[tuple[str, int]],
        worker: str,
        device: str,
        n: int,
        lowest_first: bool,
        runs: str,
    ) -> list[Any]:
        return [
            worker,
            device,
            f"{self._token_base}{next(self._fetches)}",
            self.settings.lease_ttl_s,
            n,
            "1" if lowest_first else "0",
            runs,
            *(x for queue, min_age_ms in queues for x in (queue, min_age_ms)),
        ]

    def renew(self, leases: dict[str, str]) -> dict[str, str]:
        """Extend leases {request_id: token}; returns {request_id: 'ok'|'cancel'|'lost'}."""
        if not leases:
            return {}
        flat = [x for pair in leases.items() for x in pair]
        return dict(zip(leases, self._run("renew", self.settings.lease_ttl_s, *flat), strict=True))

    def finish(self, request_id: str, token: str, status: Status, **fields: Any) -> bool:
        """End the attempt holding ``token``; False (nothing written) when the lease is no
        longer its own."""
        flat = [x for k, v in fields.items() if v is not None for x in (k, _encode(v))]
        reply = self._run("finish", request_id, token, status.value, self._retention, *flat)
        return bool(reply == "ok")

    def retry(
        self, request_id: str, token: str, *, delay_s: float, counter: str, error: dict, reason: str
    ) -> int | str:
        """Requeue after a failure; returns the next attempt, 'canceled' or 'stale'."""
        return self._run(
            "retry",
            request_id,
            token,
            delay_s,
            counter,
            json.dumps(error),
            reason,
            self._retention,
        )

    def recover(self, *, batch: int = 100) -> list[tuple[str, str]]:
        """Requeue requests of dead workers and promote due retries (safe to run anywhere)."""
        flat = self._run("recover", self.settings.max_worker_losses, self._retention, batch)
        return list(zip(flat[::2], flat[1::2], strict=True))

    def report_progress(
        self, request_id: str, token: str, fraction: float, message: str | None
    ) -> bool:
        """Progress on the record and, as an IN_PROGRESS event, on the stream; False (nothing
        written) when ``token`` no longer holds the request's lease."""
        reply = self._run("attempt", request_id, token, "progress", fraction, message or "")
        return bool(reply == "ok")

    def append_chunk(self, request_id: str, token: str, data: bytes) -> bool:
        """One item of a streaming cord, in order, for the gateway to relay (fenced)."""
        return bool(self._run("attempt", request_id, token, "chunk", data) == "ok")

    def set_attempt_fields(self, request_id: str, token: str, **fields: Any) -> bool:
        """Record fields written by the running attempt only (fenced by its lease token)."""
        flat = [x for k, v in fields.items() for x in (k, _encode(v))]
        return bool(self._run("attempt", request_id, token, "fields", *flat) == "ok")

    def recent(
        self,
        app: str,
        *,
        limit: int = 50,
        statuses: set[Status] | None = None,
        job: str | None = None,
        since: float | None = None,
        scan: int = 2_000,
    ) -> list[RequestRecord]:
        """The app's newest requests first (from its capped index; expired records skipped),
        only those in ``statuses``, of ``job`` and created at or after ``since`` (epoch s) if
        given. Reads at most ``scan`` ids and their status and job, then only the records
        it returns."""
        index = keys.recent_key(app)
        low: Any = "-inf" if since is None else since
        picked: list[str] = []
        start, page = 0, max(limit, 100)
        while len(picked) < limit and start < scan:
            ids: Any = self.client.zrevrangebyscore(index, "+inf", low, start=start, num=page)
            if not ids:
                break
            pipe = self.client.pipeline(transaction=False)
            for rid in ids:
                pipe.hmget(keys.record_key(rid), "status", "job")
            for rid, (status, its_job) in zip(ids, pipe.execute(), strict=True):
                if status is None or (job is not None and its_job != job):
                    continue
                if statuses is None or Status(status) in statuses:
                    picked.append(rid)
            start += page
        pipe = self.client.pipeline(transaction=False)
        for rid in picked[:limit]:
            pipe.hgetall(keys.record_key(rid))
        return [RequestRecord.from_hash(raw) for raw in pipe.execute() if raw]

    def apps(self) -> list[str]:
        """Apps that have submitted requests (from the in-flight counters)."""
        return sorted(self.client.hkeys(keys.inflight_key()))  # type: ignore[arg-type]

    # -- dead letters ----------------------------------------------------------------------
    def failed(self, app: str, *, limit: int = 50) -> list[RequestRecord]:
        """FAILED requests of an app, newest first (those past retention are dropped)."""
        index = keys.failed_key(app)
        ids: Any = self.client.zrevrange(index, 0, limit - 1)
        pipe = self.client.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(keys.record_key(rid))
        out, gone = [], []
        for rid, raw in zip(ids, pipe.execute(), strict=True):
            if raw and raw.get("status") == "FAILED":
                out.append(RequestRecord.from_hash(raw))
            else:
                gone.append(rid)
        if gone:
            self.client.zrem(index, *gone)
        return out

    def rerun(self, request_id: str, *, max_in_flight: int = 0) -> int:
        """Run an ended, unsuccessful request again under the same id; returns its attempt.
        ``max_in_flight``: the app's cap, as for a submission (TooManyRequests past it)."""
        outcome, detail = self._run("rerun", request_id, max_in_flight)
        if outcome == "missing":
            raise RequestNotFound(request_id)
        if outcome == "busy":
            raise TooManyRequests(
                f"cannot retry request {request_id} now: its app has {detail} requests queued "
                f"or running, its cap is {max_in_flight}; try again when some have finished",
                retry_after_s=1.0,
            )
        if outcome != "requeued":
            what = "it SUCCEEDED" if outcome == "succeeded" else f"it is still {detail}"
            raise NotRetryable(f"request {request_id} cannot be retried: {what}")
        return int(detail)

    # -- webhook delivery queue ----------------------------------------------------------
    def webhooks_due(self, *, lease_s: float, batch: int = 16) -> list[str]:
        """Claim up to ``batch`` due deliveries, each leased (a crashed deliverer's come back)."""
        return list(self._run("webhook", "claim", lease_s, batch))

    def webhook_delivered(self, request_id: str, status_code: int | None, ms: float) -> None:
        """Delivered: the receiver's 2xx code (None for a dramatiq broker, which has none)."""
        code = "" if status_code is None else status_code
        self._run("webhook", "delivered", request_id, code, round(ms, 1))

    def webhook_failed(
        self,
        request_id: str,
        error: str,
        retry_in_s: float | None,
        status_code: int | None = None,
        ms: float | None = None,
    ) -> str:
        """Record a failed attempt; ``retry_in_s`` None: give up (FAILED). ``status_code``
        and ``ms``: the receiver's answer, when it gave one (a non-2xx)."""
        delay = -1 if retry_in_s is None else retry_in_s
        code = "" if status_code is None else status_code
        took = "" if ms is None else round(ms, 1)
        return str(self._run("webhook", "failed", request_id, error, delay, code, took))

    def webhook_defer(self, request_id: str, delay_s: float) -> None:
        """Put a claimed delivery back for ``delay_s`` without counting an attempt."""
        self._run("webhook", "defer", request_id, delay_s)

    def webhook_again(self, request_id: str) -> None:
        if self._run("webhook", "again", request_id) == "missing":
            raise RequestNotFound(request_id)


def _claimed(flat: list[str], worker: str, token: str, device: str = "") -> dict[str, str]:
    """A record as the claim script read it (still QUEUED), as the claim left it."""
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    fields.update(status=Status.IN_PROGRESS.value, worker=worker, lease=token)
    if device:
        fields["device"] = device
    return fields


def _encode(value: Any) -> str | int | float:
    if isinstance(value, str | int | float):
        return value
    return json.dumps(value)
