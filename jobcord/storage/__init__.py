"""What is remembered: request records and events, idempotency keys, the result store."""

from .connection import connect, redis_url
from .errors import (
    ConfigurationError,
    IdempotencyConflict,
    JobcordError,
    RequestNotFound,
    ResultStoreError,
)
from .records import RequestError, RequestRecord, ResultFile
from .requests import NewRequest, RequestStore, StatusEvent, Submission
from .results import LocalResultStore, ResultStore, open_result_store, result_prefix
from .settings import Settings, load_settings
from .statuses import TERMINAL_STATUSES, Status, WebhookStatus

__all__ = [
    "ConfigurationError",
    "IdempotencyConflict",
    "JobcordError",
    "LocalResultStore",
    "NewRequest",
    "RequestError",
    "RequestNotFound",
    "RequestRecord",
    "RequestStore",
    "ResultFile",
    "ResultStore",
    "ResultStoreError",
    "Settings",
    "Status",
    "StatusEvent",
    "Submission",
    "TERMINAL_STATUSES",
    "WebhookStatus",
    "connect",
    "load_settings",
    "result_prefix",
    "open_result_store",
    "redis_url",
]
