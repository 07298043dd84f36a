"""Jinja2 templates of the dashboard: autoescaped (every value shown may come from a user),
with small filters for times, durations and sizes."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["Renderer"]


def ago(ts: float | None) -> str:
    """'3 s ago', '5 min ago', '2 h ago'; '' for None."""
    if ts is None:
        return ""
    s = time.time() - float(ts)
    if s < 0:
        return "in " + duration(-s)
    return duration(s) + " ago"


def duration(s: float | None) -> str:
    if s is None:
        return ""
    s = float(s)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def clock(ts: float | None) -> str:
    """An absolute UTC time, to the millisecond (what logs print)."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def pretty(value: Any, limit: int = 4000) -> str:
    """A JSON value indented for reading, cut at ``limit`` characters."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text):,} characters)"


class Renderer:
    def __init__(self, directory: Path, *, auth_required: bool) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(ago=ago, duration=duration, clock=clock, size=size, pretty=pretty)
        self.env.globals["now"] = time.time
        self.env.globals["auth_required"] = auth_required

    def render(self, name: str, **values: Any) -> str:
        # Every page's frame: no live stream and no error unless the page says so.
        return self.env.get_template(name).render(**{"stream": None, "error": None, **values})
