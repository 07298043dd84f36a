"""Standard Webhooks signatures (https://www.standardwebhooks.com): sign and verify.

``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, one per
active secret, space-separated (that is how a rotation overlaps). Secrets read
``whsec_<base64 key>``. Checked against the ``standardwebhooks`` package in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from jobcord.storage.errors import JobcordError

__all__ = ["sign", "verify_webhook", "new_secret", "WebhookVerificationError", "signed_headers"]

_PREFIX = "whsec_"


class WebhookVerificationError(JobcordError):
    http_status = 400


def _key(secret: str) -> bytes:
    raw = secret[len(_PREFIX) :] if secret.startswith(_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise ValueError("a webhook secret must look like 'whsec_<base64>'") from exc


def new_secret() -> str:
    return _PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(msg_id: str, timestamp: int, body: bytes, active_secrets: list[str]) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(s), content, hashlib.sha256).digest()).decode()
        for s in active_secrets
    )


def signed_headers(msg_id: str, body: bytes, active_secrets: list[str]) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, active_secrets),
        "content-type": "application/json",
    }


def verify_webhook(
    headers: Mapping[str, str], body: bytes | str, secret: str, *, tolerance_s: float = 300
) -> Any:
    """Check a delivery's signature and freshness; returns the parsed body or raises
    :class:`WebhookVerificationError` for anything a sender could put in the headers (odd
    types, non-ASCII, garbage) and ``ValueError`` only for a malformed ``secret``."""
    lower = {str(k).lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = (
        lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and ts and sigs):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not all(isinstance(v, str) and v.isascii() for v in (msg_id, ts, sigs)):
        raise WebhookVerificationError("webhook headers must be ASCII text")
    if not ts.isdigit() or len(ts) > 12:
        raise WebhookVerificationError("webhook-timestamp is not an integer")
    timestamp = int(ts)
    if abs(time.time() - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too old or too new")
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
    else:
        raise WebhookVerificationError("the body must be bytes or str")
    expected = sign(msg_id, timestamp, data, [secret]).split(",", 1)[1].encode()
    for candidate in sigs.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            try:
                return json.loads(data)
            except ValueError:
                raise WebhookVerificationError("the signed body is not JSON") from None
    raise WebhookVerificationError("no matching signature")
