"""Binary payloads: bytes and numpy arrays travel raw (msgpack), never base64 (also the
benchmark's app: scale vs scale_b64 is the same work, binary vs JSON)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from jobcord import App

app = App("binary")


@app.job()
def scale(a: np.ndarray, factor: float = 2.0) -> np.ndarray:
    return a * factor


@app.job()
def checksum(data: bytes) -> dict[str, int]:
    return {"len": len(data), "sum": sum(data) % 65536}


@app.job()
def mixed(blob: bytes, a: np.ndarray) -> dict[str, Any]:
    return {"blob": blob[::-1], "a": a.T, "note": "nested binary in a dict"}


@app.job()
def scale_b64(a: str, dtype: str, shape: list[int], factor: float = 2.0) -> str:
    """The same as scale, the way JSON-only queues make you do it (base64 both ways)."""
    arr = np.frombuffer(base64.b64decode(a), dtype=dtype).reshape(shape) * factor
    return base64.b64encode(arr.astype(dtype).tobytes()).decode()
