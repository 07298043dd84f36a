"""How a job's return value travels: JSON inline on the record, or a blob in the result store.

Both ends live here so they cannot drift: the consumer encodes, the client decodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage.records import RequestRecord

from .payloads import MSGPACK_TYPE, is_binary, pack, unpack
from .signatures import JobSignature

__all__ = ["EncodedOutput", "encode_output", "decode_output", "JSON_TYPE", "BYTES_TYPE"]

JSON_TYPE = "application/json"
BYTES_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class EncodedOutput:
    content_type: str  # JSON_TYPE or BYTES_TYPE
    data: bytes


def encode_output(signature: JobSignature, value: Any) -> EncodedOutput:
    """bytes stay raw; outputs holding bytes or arrays become msgpack; the rest JSON."""
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
