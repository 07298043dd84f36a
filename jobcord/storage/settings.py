"""Configuration: ``JOBCORD_*`` environment variables, read once at start-up.

Nothing reads the environment at import time; processes call :func:`load_settings` when they
start and pass the object down.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "load_settings", "user_data_dir"]


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/jobcord`` (``~/.local/share/jobcord``): the embedded default's home."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "jobcord"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBCORD_", extra="ignore")

    redis_url: str | None = Field(
        default=None, description="Redis URL; unset: an embedded redis-server under data_dir."
    )
    redis_max_connections: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Redis connections one process may open (each thread that waits on a "
        "result holds one; redis-py 8 caps a pool at 100 by default).",
    )
    redis_min_replicas_ack: int = Field(
        default=0,
        ge=0,
        le=100,
        description="A submit returns its request id only once this many replicas hold it "
        "(WAIT); short of that within redis_ack_timeout_ms it fails, retryable. 0: the primary's "
        "reply is the acknowledgement (a failover may lose the newest submits).",
    )
    redis_ack_aof: bool = Field(
        default=False,
        description="Also wait until the primary (and those replicas) wrote the submit to their "
        "append-only file (WAITAOF; Redis 7.2+, appendonly yes).",
    )
    redis_ack_timeout_ms: int = Field(
        default=2000,
        ge=1,
        le=60_000,
        description="How long a submit waits for its acknowledgement before it fails.",
    )
    redis_functions: bool = Field(
        default=True,
        description="Load jobcord's scripts as a Redis function library where the server has "
        "functions (7.0+); off: EVALSHA, as on older servers.",
    )
    data_dir: Path = Field(
        default_factory=lambda: user_data_dir(),
        description="Embedded Redis data and local results when no S3 bucket is set; one per "
        "user by default, so every process finds the same one from any folder.",
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint URL.")
    s3_bucket: str | None = Field(default=None, description="Bucket; unset: local result dir.")
    s3_public_url: str | None = Field(
        default=None,
        description="The store's address as callers reach it, for presigned URLs (e.g. "
        "https://files.example.com); unset: the endpoint URL.",
    )
    s3_prefix: str = Field(default="jobcord", description="Key prefix inside the bucket.")
    s3_region: str | None = Field(default=None, description="Region for the S3 client.")
    presign_expiry_s: float = Field(default=3600.0, gt=0)
    inline_output_max_bytes: int = Field(
        default=64 * 1024, ge=0, description="JSON outputs up to this size stay on the record."
    )
    inline_input_max_bytes: int = Field(
        default=2**20,
        ge=0,
        description="Larger binary inputs go to the result store, not Redis.",
    )
    idempotency_retention_s: float = Field(default=24 * 3600.0, gt=0)
    recent_requests_per_app: int = Field(
        default=10_000, ge=1, description="Newest requests per app kept in the list index."
    )
    record_retention_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="How long a finished request is kept."
    )
    lease_ttl_s: float = Field(
        default=5.0, gt=0, description="A running request whose lease is older is recovered."
    )
    maintenance_interval_s: float = Field(default=0.5, gt=0)
    kill_grace_s: float = Field(
        default=3.0, ge=0, description="SIGTERM to SIGKILL grace when stopping a job's process."
    )
    child_startup_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Longest a job process may take to start (import, on_startup) before it "
        "is killed (a consumer that cannot warm its children exits with the error).",
    )
    job_memory_limit: str | None = Field(
        default=None,
        description="Memory a job process may use while it runs a job that sets no "
        "memory_limit of its own: bytes or a size like 8GiB (unset: no limit).",
    )
    job_pids_limit: int = Field(
        default=4096,
        ge=0,
        le=4_194_304,
        description="Processes and threads one job process and its helpers may hold at once, "
        "where the pids cgroup controller is delegated (0: no limit).",
    )
    cgroup_root: str | None = Field(
        default=None,
        description="A delegated cgroup v2 directory for job processes (unset: the worker's "
        "own cgroup; off: no cgroups, session + subreaper and RLIMIT_DATA only).",
    )
    outcome_retry_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="How long a finished job holds its outcome while Redis refuses writes or "
        "cannot be reached, retrying the final write with backoff.",
    )
    max_worker_losses: int = Field(
        default=3, ge=1, description="A request whose worker died this often ends FAILED."
    )
    max_infra_retries: int = Field(
        default=3,
        ge=0,
        description="Retries after an infrastructure fault (result store down), apart from "
        "the job's own retries; 1 s, 2 s, 4 s ... apart.",
    )
    max_lent_slots: int = Field(
        default=8,
        ge=0,
        description="Extra children a consumer may start while jobs wait on their children.",
    )
    fallback_after_s: float = Field(
        default=5.0,
        ge=0,
        description="A request waiting this long on its cheapest GPU class may run on another "
        "class its selector accepts.",
    )
    priority_aging_every: int = Field(
        default=10,
        ge=0,
        description="Every Nth fetch prefers the lowest waiting priority (0: strict order).",
    )
    cron_misfire_grace_s: float = Field(
        default=3600.0,
        ge=0,
        description="A missed cron tick still fires (once) if it is at most this old.",
    )
    upload_retry_s: float = Field(default=30.0, gt=0, description="Budget for S3 upload retries.")
    health_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often scheduler and consumer processes publish their loops' health.",
    )
    loop_stale_after_s: float = Field(
        default=30.0,
        gt=0,
        description="A loop whose last pass is older than max(3 x its interval, this) is stale "
        "(/healthz: degraded); so is a process silent that long.",
    )
    log_format: str = Field(default="json", pattern="^(json|console)$")
    log_level: str = Field(default="INFO")
    api_max_body_bytes: int = Field(default=10 * 2**20, gt=0, description="Larger bodies: 413.")
    api_max_wait_s: float = Field(
        default=300.0, gt=0, description="Longest run_remote wait_seconds and cord wait."
    )
    api_max_waits: int = Field(
        default=256,
        ge=1,
        description="Open event streams and waiting calls (run_remote, cords) of one API "
        "process in all; past it 429. Its Redis pool for waits holds as many connections.",
    )
    api_max_waits_per_key: int = Field(
        default=32, ge=1, description="The same, per API key; past it 429."
    )
    api_keep_alive_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="An API connection silent this long after a response is closed.",
    )
    api_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A request line and headers must arrive within this of the connection "
        "opening (or of a later request's first byte); past it the connection is closed.",
    )
    api_max_connections: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Open connections of one API process; a new one past it closes the one "
        "idle longest, or is closed at once when every one is being answered.",
    )
    max_input_bytes: int = Field(
        default=2**20,
        gt=0,
        description="Largest JSON input (encoded) of a request, which lives in Redis; past it "
        "413 (a ValueError in Python). Binary inputs: see inline_input_max_bytes.",
    )
    max_metadata_bytes: int = Field(
        default=16 * 1024, gt=0, description="Largest metadata (JSON-encoded); past it 413."
    )
    metrics_token: str | None = Field(
        default=None,
        description="A bearer token that may read /metrics only (for a scraper); API keys "
        "allowed this API's app may read it too.",
    )
    api_rate_per_s: float = Field(
        default=0.0,
        ge=0,
        description="Submissions per second per API key (0: no limit); a key may carry its own.",
    )
    api_rate_burst: int = Field(default=0, ge=0, description="Bucket size; 0: 2 s of rate.")
    max_in_flight_per_app: int = Field(
        default=0, ge=0, description="Requests queued or running per app (0: no cap); 429 past it."
    )
    app_max_in_flight: dict[str, int] = Field(
        default_factory=dict, description='Per-app caps as JSON, e.g. {"demo": 100}.'
    )
    autoscale_concurrency_target: float = Field(
        default=1.0,
        gt=0,
        description="Requests per consumer that desired_consumers aims for (GET /v1/queues).",
    )
    webhook_secret: str | None = Field(
        default=None, description="Default whsec_ signing secret for every app."
    )
    webhook_allowed_networks: str = Field(
        default="", description="CIDRs webhooks may reach although private (e.g. 127.0.0.0/8)."
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="One wall-clock deadline per delivery attempt: connect, send and read.",
    )
    webhook_retry_schedule_s: str = Field(
        default="5,300,1800,7200,18000,36000,36000",
        description="Delays before each retry after a failed delivery (about 28 h in all).",
    )
    webhook_concurrency: int = Field(default=8, ge=1)
    webhook_concurrency_per_receiver: int = Field(
        default=0,
        ge=0,
        description="Deliveries under way to one receiver (host:port) at most; 0: half of "
        "webhook_concurrency. Its other deliveries wait, so one slow receiver never holds "
        "every worker.",
    )
    webhook_default_secret_overlap_s: float = Field(
        default=24 * 3600.0,
        ge=0,
        description="After an app gets its first own webhook secret, the default secret "
        "(JOBCORD_WEBHOOK_SECRET) keeps signing its webhooks this long beside it.",
    )

    dramatiq_broker_url: str | None = Field(
        default=None,
        description="The team's dramatiq broker (redis:// or amqp://) that on_complete "
        "messages go to; read by jobcord scheduler.",
    )
    dramatiq_actors: str = Field(
        default="",
        description="Actors callers may name in on_complete (comma-separated); empty: any.",
    )

    def in_flight_cap(self, app: str) -> int:
        return self.app_max_in_flight.get(app, self.max_in_flight_per_app)

    def webhook_schedule(self) -> list[float]:
        return [float(x) for x in self.webhook_retry_schedule_s.split(",") if x.strip()]


def load_settings(**overrides: object) -> Settings:
    """Read the environment now (never at import time); ``overrides`` win over it."""
    return Settings(**overrides)  # type: ignore[arg-type]
