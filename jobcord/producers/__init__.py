"""How work enters: the App registry with @job, the client, request handles."""

from jobcord.scheduler.autoscaling import Autoscaling
from jobcord.scheduler.context import JobContext
from jobcord.scheduler.errors import (
    InputValidationError,
    OutputValidationError,
    PermanentError,
    ReservedIdempotencyKey,
    RetryableError,
)
from jobcord.scheduler.gpu_classes import NodeSelector
from jobcord.scheduler.webhooks.signing import WebhookVerificationError, verify_webhook
from jobcord.storage.errors import RedisUnavailable

from .app import App
from .async_client import aclose
from .client import Client, RedisClient, SubmitOptions, default_client, set_default_client
from .errors import (
    JobCanceled,
    JobExpired,
    JobFailed,
    JobTimedOut,
    RemoteError,
    ResultTimeout,
    TooLarge,
)
from .functions import RemoteFunction
from .handle import RequestHandle
from .http_client import GatewayError, HttpClient
from .local import LocalClient, run_local

__all__ = [
    "App",
    "Autoscaling",
    "Client",
    "GatewayError",
    "HttpClient",
    "InputValidationError",
    "OutputValidationError",
    "JobCanceled",
    "JobContext",
    "JobExpired",
    "JobFailed",
    "JobTimedOut",
    "LocalClient",
    "NodeSelector",
    "PermanentError",
    "RedisClient",
    "RedisUnavailable",
    "RemoteError",
    "RemoteFunction",
    "RequestHandle",
    "ReservedIdempotencyKey",
    "RetryableError",
    "ResultTimeout",
    "SubmitOptions",
    "TooLarge",
    "default_client",
    "set_default_client",
    "run_local",
    "verify_webhook",
    "WebhookVerificationError",
    "aclose",
]
