"""The ``jobcord`` command line. Errors print one clear line (no traceback) and exit 2."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import redis
import typer
from rich.console import Console
from rich.table import Table

from jobcord.storage.errors import JobcordError
from jobcord.storage.logs import configure_logging
from jobcord.storage.settings import Settings, load_settings

from .health import register as register_health
from .manage import register as register_management

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line


def _settings(*, quiet: bool = False) -> Settings:
    """The settings, with logging set up. ``quiet`` (short client commands): only warnings,
    unless JOBCORD_LOG_LEVEL asks for more, so their output is not buried in log lines."""
    settings = load_settings()
    level = "WARNING" if quiet and "JOBCORD_LOG_LEVEL" not in os.environ else settings.log_level
    configure_logging(settings.log_format, level)
    return settings


MetricsPort = Annotated[
    int | None,
    typer.Option(
        min=0, max=65535, help="Serve Prometheus metrics on this port (0: a free one; unset: off)"
    ),
]
MetricsHost = Annotated[
    str, typer.Option(help="Address for --metrics-port (0.0.0.0 for a scraper on the network)")
]


@app.command()
def worker(
    app_refs: Annotated[list[str], typer.Argument(metavar="MODULE:APP...")],
    gpus: Annotated[str, typer.Option(help="all | none | indexes like 0,1")] = "none",
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Job processes per device group (they share its GPUs); default: 1 per "
            "group, or one per CPU core with --gpus none",
        ),
    ] = None,
    drain: Annotated[float, typer.Option(help="Seconds to let running jobs finish on stop")] = 30.0,
    gpus_per_child: Annotated[
        int | None,
        typer.Option(min=1, help="GPUs per job process (default: the largest job's gpu_count)"),
    ] = None,
    max_jobs_per_child: Annotated[
        int, typer.Option(min=0, help="Replace a job process after this many jobs (0: never)")
    ] = 0,
    recycle_memory_fraction: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Replace a job process still holding this fraction of a GPU after a job (0: off)",
        ),
    ] = 0.0,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
    autoscale: Annotated[
        bool | None,
        typer.Option(
            "--autoscale/--no-autoscale",
            help="Scale replicas by demand (default: on with several apps, or an app that "
            "declares autoscaling; --no-autoscale runs one app's fixed set of processes)",
        ),
    ] = None,
    min_replicas: Annotated[
        int | None, typer.Option(min=0, help="Autoscaling: fewest replicas (0: to zero)")
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option(min=1, help="Autoscaling: most replicas on all hosts")
    ] = None,
    concurrency_target: Annotated[
        float | None, typer.Option(min=0.001, help="Autoscaling: requests per replica")
    ] = None,
    target_utilization: Annotated[
        float | None, typer.Option(min=0.01, max=1.0, help="Autoscaling: of that target")
    ] = None,
    scale_window: Annotated[
        float | None, typer.Option(min=0.1, help="Autoscaling: seconds of demand looked at")
    ] = None,
    scale_down_delay: Annotated[
        float | None, typer.Option(min=0.0, help="Autoscaling: seconds before scaling down")
    ] = None,
    share_gpus: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Autoscaling: replicas (of any apps) one GPU may hold at once (1: its own)",
        ),
    ] = 1,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            help="Memory a job process may use while it runs a job that sets no "
            "memory_limit, e.g. 8GiB (default: JOBCORD_JOB_MEMORY_LIMIT, unset: none)",
        ),
    ] = None,
) -> None:
    """Consume the apps' queues that this machine's devices can serve. One app: a fixed
    set of job processes; several (or --autoscale): replicas per app by demand."""
    from jobcord.consumers.devices import discover_devices, select_devices
    from jobcord.consumers.worker import ConsumerConfig, default_concurrency, run_consumer
    from jobcord.scheduler.bounds import memory_size
    from jobcord.scheduler.metrics_server import serve_metrics

    settings = _settings()
    if memory_limit is not None:
        try:
            memory_size("--memory-limit", memory_limit)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--memory-limit") from None
        settings = settings.model_copy(update={"job_memory_limit": memory_limit})
    serve_metrics(metrics_host, metrics_port)
    devices = select_devices(gpus, discover_devices())
    overrides = {
        name: value
        for name, value in (
            ("min_replicas", min_replicas),
            ("max_replicas", max_replicas),
            ("concurrency_target", concurrency_target),
            ("target_utilization", target_utilization),
            ("window_s", scale_window),
            ("scale_down_delay_s", scale_down_delay),
        )
        if value is not None
    }
    if autoscale is False and len(app_refs) > 1:
        raise typer.BadParameter("several apps are always autoscaled", param_hint="--no-autoscale")
    elastic = (
        len(app_refs) > 1 or bool(overrides) or share_gpus > 1 or _declares_autoscaling(app_refs[0])
    )
    if autoscale or (autoscale is None and elastic):
        from jobcord.consumers.host import HostConfig, run_host

        host = HostConfig(
            app_refs,
            devices,
            concurrency,
            drain,
            gpus_per_child=gpus_per_child,
            max_jobs_per_child=max_jobs_per_child,
            recycle_memory_fraction=recycle_memory_fraction,
            share_gpus=share_gpus,
            overrides=overrides,
        )
        run_host(host, settings)
        return
    config = ConsumerConfig(
        app_refs[0],
        concurrency or default_concurrency(devices),
        devices,
        drain,
        gpus_per_child=gpus_per_child,
        max_jobs_per_child=max_jobs_per_child,
        recycle_memory_fraction=recycle_memory_fraction,
    )
    run_consumer(config, settings)


def _declares_autoscaling(app_ref: str) -> bool:
    from jobcord.scheduler.loader import load_app

    return load_app(app_ref).autoscaling is not None


@app.command()
def api(
    app_ref: Annotated[str, typer.Argument(metavar="MODULE:APP")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Development only: accept calls without a key")
    ] = False,
) -> None:
    """Serve the app's jobs and cords over HTTP (FastAPI + uvicorn)."""
    import uvicorn

    from jobcord.producers.gateway import create_app
    from jobcord.producers.gateway.connections import guarded_protocol, raise_open_files_limit
    from jobcord.scheduler.loader import load_app

    settings = _settings()
    if no_auth:
        err_console.print(
            "[bold red]WARNING: API keys are OFF (--no-auth): anyone who can reach "
            f"{host}:{port} can run and read every request. Development only.[/bold red]"
        )
    registry = load_app(app_ref)
    _check_redis(settings)
    gateway = create_app(registry, settings, require_auth=not no_auth)
    shown = f"[{host}]" if ":" in host else host
    auth = "off (--no-auth)" if no_auth else "on (Authorization: Bearer <key>; jobcord keys create)"
    err_console.print(
        f"jobcord api: app {registry.name!r} ({len(registry.jobs)} jobs and cords) on "
        f"http://{shown}:{port}  docs: /docs  health: /healthz  API keys: {auth}"
    )
    # Redis connections (the wait pool and the rest), the listener, logs: beside the callers.
    needed = settings.api_max_connections + settings.api_max_waits + 256
    open_files = raise_open_files_limit(needed)
    if open_files < needed:
        err_console.print(
            f"[yellow]open-files limit {open_files} is below the {needed} that "
            f"JOBCORD_API_MAX_CONNECTIONS={settings.api_max_connections} needs: raise it "
            "(ulimit -n) or lower that setting, or new connections stall at the limit[/yellow]"
        )
    protocol = guarded_protocol(
        keep_alive_s=settings.api_keep_alive_s,
        header_timeout_s=settings.api_header_timeout_s,
        max_connections=settings.api_max_connections,
    )
    uvicorn.run(gateway, host=host, port=port, http=protocol, log_level="warning", access_log=False)


keys_app = typer.Typer(no_args_is_help=True, help="API keys: create (shown once), list, revoke.")
app.add_typer(keys_app, name="keys")


def _key_store():  # type: ignore[no-untyped-def]
    from jobcord.storage.apikeys import ApiKeyStore
    from jobcord.storage.connection import connect

    return ApiKeyStore(connect(_settings(quiet=True)))


@keys_app.command("create")
def keys_create(
    apps: Annotated[str, typer.Option(help="Comma-separated app names, or '*' for all")],
    rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Submissions per second for this key (0: none; default: the "
            "gateway's JOBCORD_API_RATE_PER_S)",
        ),
    ] = None,
) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    key, record = _key_store().create(apps.split(","), rate_per_s=rate)
    limit = "" if rate is None else f", {rate:g} submissions/s"
    err_console.print(f"key id {record.key_id} for apps {', '.join(sorted(record.apps))}{limit}")
    err_console.print("store it now: it cannot be shown again")
    console.print(key)


@keys_app.command("list")
def keys_list() -> None:
    """Key ids and their apps (never the secrets)."""
    table = Table("id", "apps", "rate/s", "created")
    for k in _key_store().list():
        rate = "default" if k.rate_per_s is None else f"{k.rate_per_s:g}"
        created = datetime.fromtimestamp(k.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        table.add_row(k.key_id, ", ".join(sorted(k.apps)), rate, created)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a key by id; calls with it get 401 at once."""
    if not _key_store().revoke(key_id):
        raise typer.BadParameter(f"no key with id {key_id!r}")
    console.print(f"revoked {key_id}")


@app.command()
def scheduler(
    apps: Annotated[
        list[str] | None,
        typer.Argument(help="MODULE:APP whose periodic jobs (schedule=...) to fire; repeatable."),
    ] = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Run maintenance (recover dead workers' requests, promote retries and delayed work),
    deliver webhooks, and fire the given apps' periodic jobs once per tick."""
    import threading
    import types

    from jobcord.scheduler.cron import CronTicker
    from jobcord.scheduler.health import HealthPublisher
    from jobcord.scheduler.loader import load_app
    from jobcord.scheduler.maintenance import MaintenanceLoop
    from jobcord.scheduler.metrics_server import serve_metrics
    from jobcord.scheduler.webhooks.delivery import WebhookDeliverer
    from jobcord.storage.connection import connect
    from jobcord.storage.requests import RequestStore
    from jobcord.storage.results import open_result_store

    settings = _settings()
    registries = [load_app(target) for target in apps or []]
    _check_redis(settings)
    store = RequestStore(connect(settings), settings)
    loops: list[MaintenanceLoop | WebhookDeliverer | CronTicker] = [
        MaintenanceLoop(store, settings.maintenance_interval_s),
        WebhookDeliverer(store, open_result_store(settings), settings),
    ]
    ticker = CronTicker(
        registries,
        store,
        interval_s=settings.maintenance_interval_s,
        grace_s=settings.cron_misfire_grace_s,
    )
    if ticker.specs:
        loops.append(ticker)
    serve_metrics(metrics_host, metrics_port)
    health = HealthPublisher(store.client, settings, role="scheduler", info={"apps": apps or []})
    from jobcord.consumers.worker import stop_on_signals

    stop = threading.Event()
    asked = types.SimpleNamespace(signalled=False)
    stop_on_signals(asked)
    for loop in loops:
        loop.start()
    health.start()
    periodic = ", ".join(f"{s.name} ({s.schedule})" for s in ticker.specs) or "none"
    err_console.print(f"scheduler running: maintenance, webhooks; periodic jobs: {periodic}")
    while not (stop.wait(1.0) or asked.signalled):  # see consumers.worker.stop_on_signals
        pass
    for loop in loops:
        loop.stop()
    for loop in loops:
        loop.join(30)
    health.close()


secrets_app = typer.Typer(no_args_is_help=True, help="Webhook signing secrets, per app.")
app.add_typer(secrets_app, name="webhook-secrets")


def _secrets():  # type: ignore[no-untyped-def]
    from jobcord.storage.connection import connect
    from jobcord.storage.webhook_secrets import WebhookSecrets

    settings = _settings(quiet=True)
    return WebhookSecrets(
        connect(settings),
        settings.webhook_secret,
        default_overlap_s=settings.webhook_default_secret_overlap_s,
    )


@secrets_app.command("add")
def secrets_add(app_name: Annotated[str, typer.Option("--app")]) -> None:
    """Add a new secret (printed once); every active secret signs until the old is retired.
    An app's first own secret: the default (JOBCORD_WEBHOOK_SECRET) keeps signing beside it
    for JOBCORD_WEBHOOK_DEFAULT_SECRET_OVERLAP_S (a day), or until `retire`."""
    from jobcord.scheduler.webhooks.signing import new_secret

    secret = new_secret()
    _secrets().add(app_name, secret)
    console.print(secret)


@secrets_app.command("retire")
def secrets_retire(app_name: Annotated[str, typer.Option("--app")]) -> None:
    """End a rotation: stop the default secret signing beside the app's own, else drop the
    app's oldest secret (when it has more than one)."""
    retired = _secrets().retire_oldest(app_name)
    if retired is None:
        raise typer.BadParameter(f"app {app_name!r} has fewer than two secrets to rotate")
    if retired == "default":
        console.print(f"the default secret no longer signs webhooks of app {app_name!r}")
    else:
        console.print("oldest secret retired")


@app.command()
def devices() -> None:
    """List this machine's GPUs (NVML) and the GPU class jobcord gives each."""
    from jobcord.consumers.devices import discover_devices

    found = discover_devices()
    table = Table("index", "uuid", "name", "memory (GiB)", "MIG", "class")
    for d in found:
        table.add_row(
            str(d.index),
            d.uuid,
            d.name,
            f"{d.memory_gb}",
            "on" if d.mig_mode else "off",
            d.gpu_class or "unknown",
        )
    if not found:
        table.add_row("-", "-", "no NVIDIA GPU found", "-", "-", "cpu")
    console.print(table)


@app.command()
def submit(
    app_ref: Annotated[str, typer.Argument(metavar="MODULE:APP")],
    job: Annotated[str, typer.Argument()],
    input_json: Annotated[str, typer.Option("--input", help="JSON object of inputs")] = "{}",
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    max_time_in_queue: Annotated[float | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option(help="Follow it to the end with a progress bar")] = False,
) -> None:
    """Queue a request for JOB and print its id (or follow it with --wait)."""
    from jobcord.producers import RemoteFunction
    from jobcord.scheduler.loader import load_app

    from .follow import follow_request

    _settings(quiet=True)
    registry = load_app(app_ref)
    try:
        payload = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--input is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise typer.BadParameter("--input must be a JSON object: the job's input, as over HTTP")
    fn = RemoteFunction(registry, registry.spec(job))  # type: ignore[arg-type]
    handle = fn.async_run_remote(
        payload, idempotency_key=idempotency_key, max_time_in_queue_seconds=max_time_in_queue
    )
    console.print(handle.request_id if handle.created else f"{handle.request_id} (existing)")
    if wait:
        follow_request(handle.request_id)


@app.command()
def status(
    request_id: Annotated[str | None, typer.Argument()] = None,
    watch: Annotated[bool, typer.Option(help="Follow it to a terminal status")] = False,
    failed: Annotated[
        bool, typer.Option(help="List an app's FAILED requests (dead letters)")
    ] = False,
    app_name: Annotated[str | None, typer.Option("--app", help="With --failed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Show a request (status, times, attempts, output or error); without one, the newest
    requests (as `jobcord list`); with --failed --app, the dead letters."""
    from jobcord.producers.client import RedisClient

    from .follow import follow_request, print_failed, print_record

    _settings(quiet=True)
    if failed:
        if not app_name:
            raise typer.BadParameter("--failed needs --app NAME")
        print_failed(RedisClient().store.failed(app_name, limit=limit))
    elif request_id is None:  # no id: the newest requests, as `jobcord list` shows them
        from .manage import list_requests

        list_requests(app_name, None, min(limit, 20))
    elif watch:
        follow_request(request_id)
    else:
        print_record(RedisClient().get(request_id))


@app.command()
def dev(
    app_ref: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:APP | stop",
            help='The app to run, or "stop" to stop the embedded redis-server',
        ),
    ] = "examples.demo:app",
    serve: Annotated[bool, typer.Option(help="Keep the consumer running after the demo")] = False,
    concurrency: Annotated[int, typer.Option(min=1)] = 2,
    api_port: Annotated[int, typer.Option(help="HTTP API port (no keys); 0: no API")] = 8000,
) -> None:
    """Everything on embedded defaults: Redis, local results, a consumer, the HTTP API (no
    keys, loudly), and a demo run."""
    from .dev import run_dev, stop_dev

    os.environ.setdefault("JOBCORD_LOG_FORMAT", "console")
    if app_ref == "stop":
        stop_dev(_settings())
        return
    run_dev(_settings(), app_ref, serve=serve, concurrency=concurrency, api_port=api_port)


register_management(app, lambda: _settings(quiet=True))
register_health(app, lambda: _settings(quiet=True))


def _check_redis(settings: Any) -> None:
    """An unreachable Redis at start-up is one clear line and exit 2 (main), not a server
    that starts, fails its start-up hook and prints the traceback."""
    from jobcord.storage.connection import connect

    client = connect(settings)
    try:
        client.ping()
    finally:
        client.close()


def _redis_problem(exc: Exception) -> str:
    from jobcord.storage.connection import redacted

    url = os.environ.get("JOBCORD_REDIS_URL")
    where = f"Redis at {redacted(url)} (JOBCORD_REDIS_URL)" if url else "the embedded Redis"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return f"cannot reach {where}: {exc}"
    return f"{where} refused the command: {exc}"


def main(argv: list[str] | None = None) -> Any:
    try:
        return app(argv, standalone_mode=False)
    except JobcordError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    except redis.RedisError as exc:
        err_console.print(f"[red]error:[/red] {_redis_problem(exc)}")
        sys.exit(2)
    except (ValueError, OSError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors carry their own message and exit code
        show = getattr(exc, "show", None)
        if show is None:
            err_console.print(f"[red]error:[/red] {exc}")
        else:
            show()
        sys.exit(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
