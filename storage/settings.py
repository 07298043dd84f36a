"""Configuration: ``JOBCORD_*`` environment variables, read once at start-up.

Nothing reads the environment at import time; processes call :func:`load_settings` when they
start and pass the object down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBCORD_", extra="ignore")

    redis_url: str | None = Field(
        default=None, description="Redis URL; unset: an embedded redis-server under data_dir."
    )
    data_dir: Path = Field(
        default=Path(".jobcord-data"),
        description="Embedded Redis data and local results when no S3 bucket is set.",
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint URL.")
    s3_bucket: str | None = Field(default=None, description="Bucket; unset: local result dir.")
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
    log_format: str = Field(default="json", pattern="^(json|console)$")
    log_level: str = Field(default="INFO")
    api_max_body_bytes: int = Field(default=10 * 2**20, gt=0, description="Larger bodies: 413.")
    api_max_wait_s: float = Field(
        default=300.0, gt=0, description="Longest run_remote wait_seconds and cord wait."
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
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Per delivery attempt.")
    webhook_retry_schedule_s: str = Field(
        default="5,300,1800,7200,18000,36000,36000",
        description="Delays before each retry after a failed delivery (about 28 h in all).",
    )
    webhook_concurrency: int = Field(default=8, ge=1)

    def in_flight_cap(self, app: str) -> int:
        return self.app_max_in_flight.get(app, self.max_in_flight_per_app)

    def webhook_schedule(self) -> list[float]:
        return [float(x) for x in self.webhook_retry_schedule_s.split(",") if x.strip()]


def load_settings(**overrides: object) -> Settings:
    """Read the environment now (never at import time); ``overrides`` win over it."""
    return Settings(**overrides)  # type: ignore[arg-type]
