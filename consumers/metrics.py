"""Prometheus metrics of a consumer process."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["JOBS_FINISHED", "JOBS_RUNNING", "JOB_SECONDS", "CHILD_RESTARTS", "job_metrics"]

JOBS_FINISHED = Counter(
    "jobcord_requests_finished_total", "Attempts that ended, by outcome", ["app", "job", "status"]
)
JOBS_RUNNING = Gauge("jobcord_requests_running", "Requests running now", ["app", "job"])
JOB_SECONDS = Histogram(
    "jobcord_request_run_seconds",
    "Time from claim to recorded outcome",
    ["app", "job"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200),
)
CHILD_RESTARTS = Counter(
    "jobcord_child_restarts_total", "Job processes replaced, by first word of why", ["slot", "why"]
)


@cache
def job_metrics(app: str, job: str) -> tuple[Gauge, Histogram]:
    """A job's running gauge and run-time histogram, looked up once (they are per job)."""
    return JOBS_RUNNING.labels(app, job), JOB_SECONDS.labels(app, job)
