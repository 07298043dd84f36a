"""The fault suite's checks, each read back from a source of truth after the run.

Records and event streams (Redis), what a caller reads through the SDK (inline or S3 outputs,
presigned file URLs), every object in the bucket, and the job's own ledger of runs.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from jobcord.storage.errors import RequestNotFound
from jobcord.storage.keys import events_key
from jobcord.storage.records import RequestRecord
from jobcord.storage.results import result_prefix

from .chaos_model import Audit, Fault, Submission

__all__ = [
    "APP",
    "JOB",
    "Redelivery",
    "events",
    "records_of",
    "check_output",
    "bucket_objects",
    "stray_objects",
    "redeliveries",
    "read_ledger",
    "fmt",
]

APP, JOB = "chaos", "chaos"


def events(r: redis.Redis, rid: str) -> list[dict[str, str]]:
    """The request's status events, oldest first (the client decodes responses)."""
    entries: Any = r.xrange(events_key(rid))
    return [fields for _id, fields in entries]


def records_of(client: Any, rids: set[str]) -> dict[str, RequestRecord | None]:
    out: dict[str, RequestRecord | None] = {}
    for rid in rids:
        try:
            out[rid] = client.get(rid)
        except RequestNotFound:
            out[rid] = None
    return out


def check_output(
    sub: Submission,
    rec: RequestRecord,
    handle: Any,
    http: httpx.Client,
    a: Audit,
    counts: Counter[str],
) -> None:
    """What a caller reads for this request must be its own, from the winning attempt."""
    rid = rec.request_id
    winner = result_prefix(APP, JOB, rid, rec.attempt) + "/"
    try:
        out = handle(rid).result(timeout=10)
    except Exception as exc:  # noqa: BLE001 - a SUCCEEDED request whose output cannot be read
        counts["missing named"] += 1
        a.problems.append(f"{sub.key} {rid}: output unreadable: {type(exc).__name__}: {exc}")
        return
    if out.get("echo") != sub.token or out.get("rid") != rid:
        counts["wrong"] += 1
        a.problems.append(f"{sub.key} {rid}: output {out.get('echo')}/{out.get('rid')} is not ours")
    if out.get("attempt") != rec.attempt:
        counts["foreign named"] += 1
        a.problems.append(f"{rid}: output of attempt {out.get('attempt')}, record {rec.attempt}")
    if rec.result is not None and not rec.result.key.startswith(winner):
        counts["foreign named"] += 1
        a.problems.append(f"{rid}: record names output {rec.result.key}, winner {winner}")
    if [f.name for f in rec.files] != ["token.txt"]:
        counts["wrong"] += 1
        a.problems.append(f"{rid}: files {[f.name for f in rec.files]}, expected token.txt")
    for f in rec.files:
        if not f.key.startswith(winner):
            counts["foreign named"] += 1
            a.problems.append(f"{rid}: record names file {f.key}, winner {winner}")
        reply = http.get(f.url or "")
        if reply.status_code != 200:
            counts["missing named"] += 1
            a.problems.append(f"{rid}: file {f.key} answers {reply.status_code}")
        elif reply.text != sub.token:
            counts["wrong"] += 1
            a.problems.append(f"{rid}: file {f.key} holds {reply.text[:40]!r}, not ours")


def bucket_objects(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def stray_objects(
    keys: list[str],
    s3_prefix: str,
    records: dict[str, RequestRecord | None],
    runs: dict[tuple[str, int], dict[str, float]],
    faults: list[Fault],
    a: Audit,
) -> Counter[str]:
    """Objects under a request's prefix that its record does not name as the winner's, by
    cause ("dead consumer": its attempt's consumer was SIGKILLed; "other"); each one is
    explained in the problems with what ended its attempt and the fault behind it."""
    stray: Counter[str] = Counter()
    killed = {f.worker for f in faults if f.kind == "kill-worker" and f.worker}
    head = f"{s3_prefix}/{APP}/{JOB}/"
    for key in keys:
        rid = key.removeprefix(head).split("/", 1)[0]
        rec = records.get(rid)
        if rec is not None and rec.status.value == "SUCCEEDED":
            winner = f"{s3_prefix}/{result_prefix(APP, JOB, rid, rec.attempt)}/"
            if key.startswith(winner):
                continue
        m = re.search(r"/attempt-(\d+)/", key)
        n = int(m.group(1)) if m else -1
        why = f"record {rec.status.value} at attempt {rec.attempt}" if rec else "record gone"
        cause = "other"
        for x in rec.attempts if rec else []:
            if x.attempt != n:
                continue
            if x.worker in killed:
                cause = "dead consumer"
            why += f"; attempt {n} ended {x.outcome} ({x.reason or x.error}) on {x.worker}"
            ended = runs.get((rid, n), {}).get("end")
            for f in faults:
                if f.worker and f.worker == x.worker:
                    why += f"; {f.kind} of that consumer at {f.at:.3f}"
                    if ended is not None:
                        why += f", {1000 * (f.at - ended):+.0f} ms after its job returned"
        stray[cause] += 1
        a.problems.append(f"foreign object {key}: {why}")
    return stray


@dataclass
class Redelivery:
    requeued_s: float  # from the fault to the lease recovery's requeue
    restarted_s: float | None  # from the fault to the next attempt's IN_PROGRESS
    same_worker: bool  # the next attempt ran on the victim again
    story: str
    request_id: str = ""
    fault_at: float = 0.0
    overtaken_by: int = 0  # newer requests that started while it waited, requeued


def redeliveries(
    faults: list[Fault], r: redis.Redis, records: dict[str, RequestRecord | None], kind: str
) -> list[Redelivery]:
    """Each request running on a victim of ``kind`` when it was hit, as it was recovered."""
    out: list[Redelivery] = []
    for fault in (f for f in faults if f.kind == kind and f.worker):
        for rid in fault.running:
            rec = records.get(rid)
            if rec is None:
                continue
            for entry in rec.attempts:
                if entry.worker != fault.worker or entry.ended_at is None:
                    continue
                if entry.ended_at < fault.at or entry.reason != "worker lost":
                    continue
                nxt = entry.attempt + 1
                starts = [
                    float(ev["at"])
                    for ev in events(r, rid)
                    if ev["status"] == "IN_PROGRESS" and int(ev["attempt"]) == nxt
                ]
                later = [x.worker for x in rec.attempts if x.attempt == nxt]
                worker = later[0] if later else rec.worker if rec.attempt == nxt else None
                got = Redelivery(
                    entry.ended_at - fault.at,
                    starts[0] - fault.at if starts else None,
                    worker == fault.worker,
                    f"{rid} after {kind} of {fault.worker}: requeued "
                    f"+{entry.ended_at - fault.at:.2f} s, attempt {nxt} started "
                    + (f"+{starts[0] - fault.at:.2f} s" if starts else "never")
                    + f" on {worker}",
                    rid,
                    fault.at,
                )
                out.append(got)
    return out


def read_ledger(
    path: Path,
) -> tuple[Counter[str], Counter[str], dict[tuple[str, int], dict[str, float]]]:
    """Runs started and finished per token, and (rid, attempt) -> {"start": t, "end": t}."""
    starts: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    runs: dict[tuple[str, int], dict[str, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            (starts if ev["ev"] == "start" else ends)[ev["token"]] += 1
            runs.setdefault((ev["rid"], ev["attempt"]), {})[ev["ev"]] = ev["t"]
    return starts, ends, runs


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"max {max(values):.2f} s, median {statistics.median(values):.2f} s (n={len(values)})"
