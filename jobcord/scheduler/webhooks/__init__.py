"""Webhook policy: signatures, allowed targets, delivery with retries."""

from .delivery import WebhookDeliverer, webhook_body
from .signing import WebhookVerificationError, new_secret, sign, signed_headers, verify_webhook
from .targets import WebhookTargetRefused, parse_networks, resolve_target

__all__ = [
    "WebhookDeliverer",
    "webhook_body",
    "WebhookTargetRefused",
    "WebhookVerificationError",
    "new_secret",
    "parse_networks",
    "resolve_target",
    "sign",
    "signed_headers",
    "verify_webhook",
]
