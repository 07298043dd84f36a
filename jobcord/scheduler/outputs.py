"""How a job's return value travels: JSON inline on the record, or a blob in the result store.

Both ends live here so they cannot drift: the consumer encodes, the client decodes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from jobcord.storage.records import RequestRecord

from .payloads import MSGPACK_TYPE, is_binary, pack, unpack
from .signatures import JobSignature

__all__ = [
    "EncodedOutput",
    "encode_output",
    "decode_output",
    "chunk_event",
    "JSON_TYPE",
    "BYTES_TYPE",
]

JSON_TYPE = "application/json"
BYTES_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class EncodedOutput:
    content_type: str  # JSON_TYPE or BYTES_TYPE
    data: bytes


def encode_output(signature: JobSignature, value: Any) -> EncodedOutput:
    """bytes stay raw; outputs holding bytes or arrays become msgpack; the rest JSON. A value
    that is not of the job's return type raises OutputValidationError."""
    if isinstance(value, memoryview):  # bytes-like, but not something pydantic calls bytes
        value = bytes(value)
    value = signature.checked_output(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return EncodedOutput(BYTES_TYPE, bytes(value))
    python = signature.output_adapter.dump_python(value)
    if is_binary(python):
        return EncodedOutput(MSGPACK_TYPE, pack(python))
    return EncodedOutput(JSON_TYPE, signature.output_adapter.dump_json(value))


def decode_output(
    signature: JobSignature | None, record: RequestRecord, fetch: Callable[[RequestRecord], bytes]
) -> Any:
    """The typed output of a SUCCEEDED record (``fetch`` reads its stored output object)."""
    if record.result is None:
        raw = record.output
    elif record.result.content_type == BYTES_TYPE:
        return fetch(record)
    elif record.result.content_type == MSGPACK_TYPE:
        raw = unpack(fetch(record))
    else:
        raw = json.loads(fetch(record))
    if signature is None:
        return raw
    return signature.output_adapter.validate_python(raw)


def chunk_event(signature: JobSignature, data: bytes) -> tuple[str | None, str]:
    """A streamed item, as ``encode_output`` made it, as (SSE event, data) that cannot break
    server-sent-event framing: a JSON item is one line of JSON (default event); a ``bytes``
    item is base64 (event ``bytes``); an item holding bytes or arrays is base64 msgpack
    (event ``msgpack``). An item type declared ``bytes`` is always ``bytes``; otherwise a
    yielded ``bytes`` value that is itself valid JSON text reads as that JSON."""
    if signature.output_type not in (bytes, bytearray):
        try:
            text = data.decode("utf-8")
            value = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            pass
        else:
            if "\n" in text or "\r" in text:  # JSON may hold line breaks between tokens
                text = json.dumps(value, separators=(",", ":"))
            return None, text
        if _is_msgpack(data):
            return "msgpack", base64.b64encode(data).decode()
    return "bytes", base64.b64encode(data).decode()


def _is_msgpack(data: bytes) -> bool:
    """Whether ``data`` is one whole msgpack value (arrays' extensions are not unpacked)."""
    try:
        msgpack.unpackb(data, ext_hook=msgpack.ExtType, raw=True, strict_map_key=False)
    except Exception:  # noqa: BLE001 - anything msgpack refuses is not msgpack
        return False
    return True
