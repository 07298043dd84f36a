"""Binary payloads: inputs and outputs holding ``bytes`` or numpy arrays travel as msgpack,
raw bytes and all, never as base64 inside JSON.

numpy arrays are a msgpack extension (code 1: ``[dtype, shape]`` header, then the raw
buffer, C order); numpy itself stays optional. Everything else msgpack cannot carry (dates,
UUIDs, ...) is converted as pydantic converts it to JSON.
"""

from __future__ import annotations

import sys
from typing import Any

import msgpack
from pydantic_core import to_jsonable_python

__all__ = ["MSGPACK_TYPE", "pack", "unpack", "is_binary", "ndarray_type"]

MSGPACK_TYPE = "application/msgpack"
_NDARRAY = 1


def ndarray_type() -> type | None:
    """numpy's array type if numpy is loaded: a value can only be an array if its module
    was imported, so this never imports numpy itself (the API process stays light)."""
    numpy = sys.modules.get("numpy")
    return None if numpy is None else numpy.ndarray  # type: ignore[no-any-return]


def is_binary(value: Any) -> bool:
    """Whether a (python-mode) payload holds bytes or arrays anywhere."""
    array = ndarray_type()
    if isinstance(value, bytes | bytearray | memoryview) or (
        array is not None and isinstance(value, array)
    ):
        return True
    if isinstance(value, dict):
        return any(is_binary(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_binary(v) for v in value)
    return False


def _default(obj: Any) -> Any:
    array = ndarray_type()
    if array is not None and isinstance(obj, array):
        import numpy as np

        data = np.ascontiguousarray(obj)
        header = msgpack.packb([data.dtype.str, list(data.shape)])
        return msgpack.ExtType(_NDARRAY, header + data.tobytes())
    return to_jsonable_python(obj)


def _ext(code: int, data: bytes) -> Any:
    if code != _NDARRAY:
        return msgpack.ExtType(code, data)
    import numpy as np

    unpacker = msgpack.Unpacker()
    unpacker.feed(data)
    dtype, shape = unpacker.unpack()
    offset = unpacker.tell()
    # A writable copy: jobs may change their input in place.
    return np.frombuffer(data, dtype=np.dtype(dtype), offset=offset).reshape(shape).copy()


def pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_default, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext, raw=False, strict_map_key=False)
