"""Managing requests from the terminal as from HTTP: list, logs, cancel, retry."""

from __future__ import annotations

from typing import Annotated

import typer

from jobcord.storage.statuses import Status

from .follow import console, print_attempts, print_error, print_event, print_list

__all__ = ["register"]


def _client():  # type: ignore[no-untyped-def]
    from jobcord.producers.client import RedisClient

    return RedisClient()


def _statuses(names: list[str] | None) -> set[Status] | None:
    if not names:
        return None
    known = {s.value for s in Status}
    wrong = [n for n in names if n.upper() not in known]
    if wrong:
        raise typer.BadParameter(f"unknown status {wrong[0]!r}; one of {', '.join(sorted(known))}")
    return {Status(n.upper()) for n in names}


def list_requests(
    app_name: Annotated[
        str | None, typer.Option("--app", help="One app (default: every app seen)")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Only these statuses (repeat the option for several)"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """The newest requests, per app: id, job, status, attempt, times, error."""
    wanted = _statuses(status)
    store = _client().store
    apps = [app_name] if app_name else store.apps()
    if not apps:
        console.print("no requests yet")
        return
    for name in apps:
        print_list(name, store.recent(name, limit=limit, statuses=wanted))


def logs(
    request_id: Annotated[str, typer.Argument()],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the request ends")
    ] = False,
) -> None:
    """A request's story: every status change in order (attempt, reason, progress), where
    each attempt ran, its webhook, then its error with the job's traceback. Every line a
    jobcord process logs about it carries request_id: grep the processes' logs for the rest."""
    client = _client()
    record = client.get(request_id)  # an unknown id is one clear error
    console.print(f"{request_id}: {record.app}.{record.job} on {record.queue}", highlight=False)
    if follow:
        events = client.store.follow(request_id, timeout_s=None)
    else:
        events = iter(client.store.events(request_id))
    for event in events:
        print_event(event)
    final = client.get(request_id) if follow else record
    print_attempts(final)
    print_error(final)


def cancel(request_id: Annotated[str, typer.Argument()]) -> None:
    """Cancel a queued request (it never runs) or a running one (its process is stopped)."""
    status = _client().cancel(request_id)
    console.print(f"{request_id}: {status.value}")


def retry(request_id: Annotated[str, typer.Argument()]) -> None:
    """Run an ended, unsuccessful request again under the same id (the app's cap applies)."""
    client = _client()
    record = client.get(request_id)
    attempt = client.store.rerun(
        request_id, max_in_flight=client.settings.in_flight_cap(record.app)
    )
    console.print(f"{request_id}: QUEUED again as attempt {attempt}")


def register(app: typer.Typer, settings_hook) -> None:  # type: ignore[no-untyped-def]
    """Add the commands to the CLI; ``settings_hook`` sets logging up (quietly) first."""

    def quiet(fn):  # type: ignore[no-untyped-def]
        import functools

        @functools.wraps(fn)
        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            settings_hook()
            return fn(*args, **kwargs)

        return run

    app.command("list")(quiet(list_requests))
    app.command()(quiet(logs))
    app.command()(quiet(cancel))
    app.command()(quiet(retry))
