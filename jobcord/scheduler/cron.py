"""Periodic jobs: ``@app.job(schedule="*/5 * * * *")``, fired by ``jobcord scheduler``.

Exactly once per tick, with any number of schedulers: a tick's request is submitted with the
idempotency key ``jobcord-cron:{job}:{tick}``, so schedulers racing for the same tick (or one
retrying after a crash between submit and bookkeeping) all get the one request. ``{ns}:cron``
remembers the last tick handled per job.

Missed ticks (every scheduler was down) are coalesced: the most recent one fires once if it is
at most ``cron_misfire_grace_s`` old; older ones are skipped and logged. A schedule seen for the
first time starts from now: it never fires ticks from before it existed.

A tick whose submission fails for a reason of its own (its key claimed with another input,
an input the job no longer accepts) is logged, counted in ``jobcord_loop_errors_total`` and
passed over; the job's later ticks fire as usual.

Expressions are evaluated in UTC; croniter's sixth field (seconds) is accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from croniter import croniter

from jobcord.storage.keys import cron_key
from jobcord.storage.requests import NewRequest, RequestStore

from .jobspec import AppRegistry, JobSpec
from .loops import EveryInterval

__all__ = ["CronTicker", "check_schedule", "previous_tick"]

log = structlog.get_logger("jobcord.cron")


def check_schedule(expression: str) -> str:
    """Validate a cron expression (5 fields, or 6 with seconds last, or @hourly & co)."""
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise ValueError(f"schedule {expression!r} is not a valid cron expression")
    return expression


def previous_tick(expression: str, at: float) -> float:
    """The latest tick before ``at`` (epoch seconds, UTC)."""
    return float(croniter(expression, datetime.fromtimestamp(at, UTC)).get_prev(float))


@dataclass(frozen=True)
class Fired:
    job: str
    tick: float
    outcome: str  # "submitted" | "existing" | "skipped" (missed) | "failed" (passed over)
    request_id: str | None = None


class CronTicker(EveryInterval):
    def __init__(
        self, apps: list[AppRegistry], store: RequestStore, *, interval_s: float, grace_s: float
    ) -> None:
        super().__init__("cron", interval_s)
        self.specs = [s for a in apps for s in a.jobs.values() if s.schedule]
        self.store = store
        self.grace_s = grace_s

    def run_once(self, now: float | None = None) -> list[Fired]:
        now = time.time() if now is None else now
        out = []
        for spec in self.specs:
            try:
                fired = self._tick(spec, now)
            except redis.RedisError:
                raise  # Redis is out for every job: the supervised pass backs off
            except Exception as exc:  # noqa: BLE001 - one job's fault never stops the others
                self.state.noted(exc, job=spec.name)
                continue
            if fired is not None:
                out.append(fired)
        return out

    def _tick(self, spec: JobSpec, now: float) -> Fired | None:
        assert spec.schedule is not None
        field = f"{spec.app}:{spec.name}"
        latest = previous_tick(spec.schedule, now)
        raw: Any = self.store.client.hget(cron_key(), field)
        if raw is None:  # a new schedule starts from now
            self.store.client.hsetnx(cron_key(), field, repr(latest))
            return None
        if latest <= float(raw):
            return None
        if now - latest > self.grace_s:
            fired = Fired(spec.name, latest, "skipped")
            log.warning("cron ticks missed and skipped", job=spec.name, latest_tick=latest)
        else:
            fired = self._submit(spec, latest)
        self._advance(field, latest)
        return fired

    def _submit(self, spec: JobSpec, tick: float) -> Fired:
        """Submit the tick's request. A tick that cannot be submitted (its key was claimed
        with another input, its schedule_input no longer fits the job) is logged, counted
        and passed over: the job's later ticks still fire."""
        try:
            sub = self.store.submit(_tick_request(spec, tick))
        except redis.RedisError:
            raise  # not the tick's fault: the mark stays, the next pass tries it again
        except Exception as exc:  # noqa: BLE001
            self.state.noted(exc, job=spec.name, tick=tick, outcome="skipped")
            return Fired(spec.name, tick, "failed")
        outcome = "submitted" if sub.created else "existing"
        log.info("cron tick", job=spec.name, tick=tick, outcome=outcome, id=sub.request_id)
        return Fired(spec.name, tick, outcome, sub.request_id)

    def _advance(self, field: str, tick: float) -> None:
        """Move the job's mark forward, never back (another scheduler may be ahead)."""

        def move(pipe: Any) -> None:
            current = pipe.hget(cron_key(), field)
            if current is None or float(current) < tick:
                pipe.multi()
                pipe.hset(cron_key(), field, repr(tick))

        self.store.client.transaction(move, cron_key())


def _tick_request(spec: JobSpec, tick: float) -> NewRequest:
    return spec.new_request(
        dict(spec.schedule_input or {}),
        idempotency_key=f"jobcord-cron:{spec.name}:{tick:.0f}",
        metadata={"scheduled_for": datetime.fromtimestamp(tick, UTC).isoformat()},
    )
