"""The fault suite's accounting: what was accepted, what ended how, and what went wrong.

Everything is read back from the sources of truth after the run, never from the submitter's
own hopes: request records and their event streams in Redis, the idempotency keys, every
object in the bucket, what callers read through the SDK, the job's ledger of runs, and the
consumers' logs (``bench/chaos_checks.py`` holds each check).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis

from jobcord.storage.keys import idempotency_key

from .chaos_checks import (
    APP,
    JOB,
    bucket_objects,
    check_output,
    events,
    fmt,
    read_ledger,
    records_of,
    redeliveries,
    stray_objects,
)
from .chaos_model import Audit, Fault, Submission

__all__ = ["audit"]

#: What consumers log when a zombie (paused past its lease) attempt is refused.
ZOMBIE_EVENTS = (
    "finish ignored: lease no longer ours",
    "lease lost; attempt abandoned",
    "attempt lost the race; its objects removed",
)


def audit(
    subs: list[Submission],
    faults: list[Fault],
    *,
    r: redis.Redis,
    client: Any,
    handle: Any,
    s3: Any,
    bucket: str,
    s3_prefix: str,
    ledger: Path,
    worker_logs: str,
    bound_s: float,
) -> Audit:
    a = Audit()
    accepted = [s for s in subs if s.rids]
    a.add("requests submitted (idempotency keys)", len(subs))
    a.add("accepted", len(accepted), f"= {len(subs)}", len(accepted) == len(subs))
    for s in subs:
        if not s.rids:
            a.problems.append(f"{s.key}: never accepted: {s.error}")
    a.add("submissions retried with the same key (Redis down)", sum(s.retries for s in subs))

    all_rids: set[str] = set()
    final: dict[str, str] = {}
    for s in accepted:
        raw = r.get(idempotency_key(APP, s.key))
        final[s.key] = str(raw).split("|")[0] if raw else s.rids[-1]
        all_rids |= {*s.rids, final[s.key]}
    records = records_of(client, all_rids)
    http = httpx.Client(timeout=10)  # one connection pool (and TLS context) for every file

    first_starts: list[tuple[float, str]] = []  # (IN_PROGRESS of attempt 1, request id)
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for s in accepted:
        rids = {*s.rids, final[s.key]}
        if len(rids) > 1:
            counts["many ids"] += 1
            a.problems.append(f"{s.key}: several request ids {sorted(rids)}")
        terminal = [rec for rid in rids if (rec := records[rid]) and rec.is_terminal]
        if not terminal:
            counts["lost"] += 1
            now = {rid: (records[rid].status.value if records[rid] else "gone") for rid in rids}  # type: ignore[union-attr]
            a.problems.append(f"{s.key}: lost, {now}")
            continue
        rec = records[final[s.key]] or terminal[0]
        statuses[rec.status.value] += 1
        if rec.error is not None and rec.status.value != "SUCCEEDED":
            errors[rec.error.type] += 1
        won = 0
        for rid in rids:
            evs = events(r, rid)
            first_starts += [
                (float(ev["at"]), rid)
                for ev in evs
                if ev["status"] == "IN_PROGRESS" and ev["attempt"] == "1"
            ]
            n = sum(1 for ev in evs if ev["status"] == "SUCCEEDED")
            won += n > 0
            if n > 1:
                counts["dup events"] += 1
                a.problems.append(f"{rid}: {n} SUCCEEDED events")
        if won > 1:
            counts["dup keys"] += 1
        if rec.status.value == "SUCCEEDED":
            check_output(s, rec, handle, http, a, counts)

    a.add(
        "lost (accepted, never terminal, or record gone)", counts["lost"], "0", not counts["lost"]
    )
    a.add("terminal by status", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    if errors:
        a.add("errors of unsuccessful requests", ", ".join(f"{k} {v}" for k, v in errors.items()))
    dups = counts["dup events"] + counts["dup keys"] + counts["many ids"]
    a.add("duplicate completions (SUCCEEDED events > 1, ids per key > 1)", dups, "0", not dups)
    resub: Counter[str] = Counter()
    for f in faults:
        resub.update(f.resubmitted)
    if resub:
        a.add(
            "resubmitted after Redis restarts: same id / new request",
            f"{resub['same']} / {resub['new']}"
            + (f" / {resub['error']} errors" if resub["error"] else ""),
            "new = 0",
            not resub["new"] and not resub["error"],
        )
    http.close()
    a.add("outputs delivered to the wrong request", counts["wrong"], "0", not counts["wrong"])
    a.add(
        "results the record names from a non-winning attempt",
        counts["foreign named"],
        "0",
        not counts["foreign named"],
    )
    a.add(
        "named result objects missing or unreadable",
        counts["missing named"],
        "0",
        not counts["missing named"],
    )
    objects = bucket_objects(s3, bucket, f"{s3_prefix}/{APP}/{JOB}/")
    starts, ends, runs = read_ledger(ledger)
    stray = stray_objects(objects, s3_prefix, records, runs, faults, a)
    a.add("objects in the bucket", len(objects))
    n = sum(stray.values())
    a.add(
        "foreign results: objects of a non-winning attempt in the bucket",
        f"{n} ({stray['dead consumer']} of SIGKILLed consumers)" if n else 0,
        "0",
        not n,
    )
    a.numbers["foreign objects of dead consumers"] = stray["dead consumer"]
    a.numbers["foreign objects, other causes"] = stray["other"]

    for kind, label in (
        ("kill-worker", "whole-worker SIGKILL"),
        ("pause-worker", "worker SIGSTOP"),
    ):
        if not [f for f in faults if f.kind == kind]:
            continue
        got = redeliveries(faults, r, records, kind)
        a.numbers[f"{kind} redeliveries"] = got
        for x in got:
            # Requests submitted after this one that started while it waited, requeued.
            rec = records[x.request_id]
            t0, t1 = x.fault_at + x.requeued_s, x.fault_at + (x.restarted_s or 1e18)
            ahead = sum(
                1
                for at, rid in first_starts
                if t0 < at < t1
                and (o := records.get(rid))
                and rec
                and o.created_at > rec.created_at
            )
            x.overtaken_by = ahead
            a.notes.append(f"redelivery: {x.story}; {ahead} newer requests started before it")
        requeued = [x.requeued_s for x in got]
        restarted = [x.restarted_s for x in got if x.restarted_s is not None]
        waited = [x.restarted_s - x.requeued_s for x in got if x.restarted_s is not None]
        held = sum(len(f.running) for f in faults if f.kind == kind and f.worker)
        if kind == "kill-worker":
            ok = bool(requeued) and max(requeued) <= bound_s
        else:
            # A consumer paused alone still has working job processes: what they held may end
            # there, within its lease, with no recovery needed (they take no new work while
            # their parent is silent). Whatever was requeued must be within the bound.
            ok = held > 0 and (not requeued or max(requeued) <= bound_s)
            a.add(f"{label}: held requests ended by its own job processes", held - len(got))
        a.add(f"{label} -> requeued by lease recovery", fmt(requeued), f"<= {bound_s:.1f} s", ok)
        # Past the requeue, a start waits for a free slot: a dead consumer's requests are the
        # product's to recover (target); a paused one's slots are out too, so only reported.
        ok = len(restarted) == len(got) and (not got or max(restarted) <= bound_s)
        ok = ok and (bool(got) or kind != "kill-worker")
        target, verdict = (f"<= {bound_s:.1f} s", ok) if kind == "kill-worker" else ("", None)
        a.add(f"{label} -> next attempt IN_PROGRESS", fmt(restarted), target, verdict)
        a.add(f"{label}: of which queued after the requeue", fmt(waited))
        overtaken = sum(x.overtaken_by for x in got)
        a.add(f"{label}: newer requests started first (requeued at the tail)", overtaken)
        same = sum(x.same_worker for x in got)
        if kind == "kill-worker":
            a.add(f"{label}: next attempt on the dead consumer", same, "0", not same)
        else:  # once it wakes, a paused consumer is a fine place for the next attempt
            a.add(f"{label}: next attempt on the paused consumer after it woke", same)

    a.add("job runs started / finished (ledger)", f"{sum(starts.values())} / {sum(ends.values())}")
    a.add("requests run more than once", sum(1 for n in starts.values() if n > 1))
    zombies = Counter(e for line in worker_logs.splitlines() for e in ZOMBIE_EVENTS if e in line)
    a.add(
        "zombie attempts refused (consumer logs)",
        ", ".join(f"{k}: {v}" for k, v in zombies.items()) or "none",
    )
    return a
