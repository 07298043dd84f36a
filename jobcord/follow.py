"""Show requests in the terminal: a record table, and a live progress bar to the end."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jobcord.storage.records import RequestRecord
from jobcord.storage.requests import StatusEvent

__all__ = [
    "print_record",
    "print_event",
    "print_error",
    "print_attempts",
    "print_failed",
    "print_list",
    "follow_request",
]

console = Console()
_COLORS = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "TIMED_OUT": "red",
    "CANCELED": "yellow",
    "EXPIRED": "yellow",
    "IN_PROGRESS": "cyan",
    "QUEUED": "blue",
}


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3] if ts else "-"


def print_record(record: RequestRecord) -> None:
    table = Table(show_header=False, box=None)
    color = _COLORS.get(record.status.value, "white")
    table.add_row("request", record.request_id)
    table.add_row("job", f"{record.app}.{record.job} on {record.queue}")
    table.add_row("status", f"[{color}]{record.status.value}[/{color}]")
    table.add_row("attempt", str(record.attempt))
    table.add_row(
        "created / started / finished",
        f"{_when(record.created_at)} / {_when(record.started_at)} / {_when(record.finished_at)}",
    )
    if record.output is not None:
        table.add_row("output", json.dumps(record.output)[:500])
    if record.result is not None:
        table.add_row("result", record.result.url or record.result.key)
    for f in record.files:
        table.add_row("file", f"{f.name} ({f.size} B) {f.url or f.key}")
    if record.error is not None:
        table.add_row("error", f"[red]{record.error.type}: {record.error.message}[/red]")
    if record.waiting_reason:
        table.add_row("waiting", f"[yellow]{record.waiting_reason}[/yellow]")
    if record.parent_id:
        table.add_row("parent", record.parent_id)
    for child in record.children:
        table.add_row("child", f"{child['request_id']} {child['job']} {child['status']}")
    for a in record.attempts:
        why = f" ({a.error})" if a.error else ""
        table.add_row("attempt log", f"#{a.attempt} {a.outcome}{why} on {a.device or a.worker}")
    console.print(table)


def print_event(event: StatusEvent) -> None:
    """One line of a request's story: when, attempt, status, and why or how far."""
    color = _COLORS.get(event.status.value, "white")
    f = event.fields
    detail = f.get("reason", "")
    if "progress" in f:
        detail = f"{float(f['progress']):.0%} {f.get('progress_message', '')}".rstrip()
    console.print(
        f"{_when(event.at)}  #{event.attempt}  [{color}]{event.status.value:<11}[/{color}]  "
        f"{escape(detail)}",
        highlight=False,
    )


def print_attempts(record: RequestRecord) -> None:
    """Where each attempt ran and how it ended; then the webhook's deliveries, if any."""
    if record.attempts:
        table = Table("attempt", "outcome", "worker", "device", "started", "ran", "why")
        table.columns[2].no_wrap = True  # grep-able: the worker id as its logs print it
        for a in record.attempts:
            ran = f"{a.ended_at - a.started_at:.3f} s" if a.started_at and a.ended_at else ""
            why = " ".join(filter(None, (a.error, a.reason)))
            color = _COLORS.get(a.outcome, "white")
            table.add_row(
                str(a.attempt),
                f"[{color}]{a.outcome}[/{color}]",
                a.worker or "",
                a.device or "",
                _when(a.started_at),
                ran,
                escape(why),
            )
        console.print(table)
    if record.webhook_endpoint:
        code, failure = record.webhook_last_status_code, record.webhook_last_error
        last = f", last HTTP {code}" if code else ""
        error = f", last error: {failure}" if failure else ""
        console.print(
            f"webhook {escape(record.webhook_endpoint)}: {record.webhook_status.value} after "
            f"{record.webhook_attempts} attempt(s){last}{escape(error)}",
            highlight=False,
        )


def print_error(record: RequestRecord) -> None:
    if record.error is None:
        return
    console.print(f"[red]{escape(record.error.type)}: {escape(record.error.message)}[/red]")
    if record.error.traceback:
        console.print(escape(record.error.traceback.rstrip()), highlight=False)


def print_failed(records: list[RequestRecord]) -> None:
    table = Table("request", "job", "attempts", "finished", "error")
    table.columns[0].no_wrap = True  # ids are copied into other commands: never cut them
    for r in records:
        error = f"{r.error.type}: {r.error.message}"[:80] if r.error else ""
        table.add_row(r.request_id, r.job, str(r.attempt), _when(r.finished_at), error)
    console.print(table if records else "no FAILED requests")


def print_list(app: str, records: list[RequestRecord]) -> None:
    table = Table("request", "job", "status", "attempt", "created", "finished", "error", title=app)
    table.columns[0].no_wrap = True
    for r in records:
        color = _COLORS.get(r.status.value, "white")
        table.add_row(
            r.request_id,
            r.job,
            f"[{color}]{r.status.value}[/{color}]",
            str(r.attempt),
            _when(r.created_at),
            _when(r.finished_at),
            f"{r.error.type}: {r.error.message}"[:60] if r.error else "",
        )
    console.print(table if records else f"{app}: no matching requests")


def follow_request(request_id: str, *, timeout_s: float | None = None) -> RequestRecord:
    """Stream the request's events (blocking reads) with a progress bar until it ends."""
    from jobcord.producers.client import RedisClient

    client = RedisClient()  # the CLI talks to Redis directly
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(request_id[:12], total=1.0, state="...")
        for event in client.store.follow(request_id, timeout_s=timeout_s):
            record = client.get(request_id)
            progress.update(
                task,
                completed=record.progress or 0.0,
                state=f"{event.status.value} (attempt {event.attempt})",
            )
        final = client.get(request_id)
        progress.update(
            task,
            completed=1.0 if final.status.value == "SUCCEEDED" else (final.progress or 0.0),
            state=final.status.value,
        )
    print_record(final)
    return final
