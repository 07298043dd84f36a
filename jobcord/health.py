"""``jobcord health``: the supervised loops of every live scheduler and consumer process.

Exit status: 0 healthy, 1 degraded (a stale loop, a silent process, or a problem a process
reports: a consumer whose job processes cannot start), 2 Redis unreachable (one line, from
the CLI's error handling).
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

console = Console()


def _age(now: float, ts: float | None) -> str:
    return "never" if ts is None else f"{max(0.0, now - ts):.1f} s ago"


def _rows(report: Any, now: float) -> list[tuple[str, ...]]:
    """``now`` is Redis's clock; each process's own times are moved onto it by how far its
    clock was from Redis's when it published (``seen_at`` - ``published_at``)."""
    from jobcord.storage.clock import seen_at

    trouble = {(p.process, p.loop): p.reason for p in report.problems}
    rows: list[tuple[str, ...]] = []
    for proc in report.processes:
        pid = proc["process"]
        where = f"{proc.get('role', '?')} {pid}"
        seen = seen_at(proc, "published_at")
        silent = trouble.get((pid, None))
        if silent is not None:
            rows.append((where, "-", _age(now, seen), "-", "[red]SILENT[/]", silent))
            continue
        own = proc.get("published_at")
        shift = seen - float(own) if seen is not None and own is not None else 0.0
        for loop in proc.get("loops", []):
            why = trouble.get((pid, loop["name"]))
            state = "[red]STALE[/]" if why else "[green]ok[/]"
            errors = f"{loop['consecutive_errors']} / {loop['errors_total']}"
            rows.append(
                (
                    where,
                    loop["name"],
                    _age(now - shift, loop.get("last_pass_at")),
                    errors,
                    state,
                    why or (loop.get("last_error") or ""),
                )
            )
        for problem in proc.get("problems", []):  # not a loop: what the process says is wrong
            rows.append((where, problem["name"], "-", "-", "[red]DEGRADED[/]", problem["reason"]))
    return rows


def health(settings_hook: Any) -> None:
    """Processes and their loops: last pass, errors (in a row / in all), state; exit 0 when
    healthy, 1 when degraded, 2 when Redis cannot be reached."""
    from jobcord.scheduler.health import assess
    from jobcord.storage.connection import connect
    from jobcord.storage.health import ProcessHealthStore

    settings = settings_hook()
    client = connect(settings)
    client.ping()
    store = ProcessHealthStore(client)
    reports = store.reports()
    now = store.now()  # Redis's clock, read once: hosts' clocks may disagree with it
    webhooks = store.webhook_backlog(now)
    report = assess(reports, stale_after_s=settings.loop_stale_after_s, now=now, webhooks=webhooks)
    table = Table("process", "loop", "last pass", "errors", "state", "detail")
    for row in _rows(report, now):
        table.add_row(*row)
    if not report.processes:
        console.print("no scheduler or consumer process has reported (none running?)")
    else:
        console.print(table)
    for problem in report.problems:
        if problem.process == "-":  # about the deployment, not one process
            console.print(f"[red]{problem.reason}[/red]")
    color = "green" if report.status == "ok" else "red"
    console.print(f"[{color}]{report.status}[/{color}]: {len(report.processes)} processes")
    if report.status != "ok":
        sys.exit(1)


def register(app: typer.Typer, settings_hook: Any) -> None:
    @app.command("health")
    def health_command() -> None:
        """Health of the supervised loops of live schedulers and consumers: exit 0 healthy,
        1 degraded (a loop stale or failing, a process silent, a consumer's job processes
        that cannot start), 2 Redis unreachable."""
        health(settings_hook)
