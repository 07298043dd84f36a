"""An app for the gateway's bounds: any-shaped inputs, and streaming cords of raw values."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jobcord.producers import App

app = App("bounds")


@app.job()
def take(items: list[Any]) -> int:
    return len(items)


@app.cord(public_api_path="/bytes", method="POST", stream=True, timeout=30)
def raw_bytes(parts: list[str]) -> Iterator[bytes]:
    """Each part as UTF-8, and ``"<invalid>"`` as bytes that are not UTF-8."""
    for part in parts:
        yield b"\xff\xfe\x00 not utf-8" if part == "<invalid>" else part.encode()


@app.cord(public_api_path="/texts", method="POST", stream=True, timeout=30)
def texts(parts: list[str]) -> Iterator[str]:
    yield from parts


@app.cord(public_api_path="/anything", method="POST", stream=True, timeout=30)
def anything(parts: list[str]) -> Iterator[Any]:
    """A part ``"b:..."`` is yielded as bytes, any other as text."""
    for part in parts:
        yield part[2:].encode() if part.startswith("b:") else part
