"""jobcord: GPU job queue. ``from jobcord import App, JobContext, NodeSelector`` (the names
of :mod:`jobcord.producers`); the layers live in ``jobcord.storage``, ``jobcord.scheduler``,
``jobcord.producers`` and ``jobcord.consumers``; the command line in :mod:`jobcord.cli`.

The producer names load on first use, so that ``import jobcord.storage`` (a worker's child,
the watchdog) pulls in no upper layer.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__: list[str] = [  # the same as jobcord.producers.__all__ (a test keeps them equal)
    "App",
    "Autoscaling",
    "Client",
    "GatewayError",
    "HttpClient",
    "InputValidationError",
    "JobCanceled",
    "JobContext",
    "JobExpired",
    "JobFailed",
    "JobTimedOut",
    "LocalClient",
    "NodeSelector",
    "OutputValidationError",
    "PermanentError",
    "RedisClient",
    "RedisUnavailable",
    "RemoteError",
    "RemoteFunction",
    "RequestHandle",
    "ReservedIdempotencyKey",
    "ResultTimeout",
    "RetryableError",
    "SubmitOptions",
    "TooLarge",
    "WebhookVerificationError",
    "aclose",
    "default_client",
    "run_local",
    "set_default_client",
    "verify_webhook",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("jobcord.producers"), name)
    raise AttributeError(f"module 'jobcord' has no attribute {name!r}")
