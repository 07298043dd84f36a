"""Request ids: how they are made and the one check of their format.

An id is 32 lowercase hex digits (a random UUID). Every door that takes an id from outside
checks it here first, so a crafted id (``abc:events``, ``../x``) can never name another key.
"""

from __future__ import annotations

import re
import uuid

__all__ = ["new_request_id", "is_request_id"]

_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def is_request_id(value: object) -> bool:
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None
