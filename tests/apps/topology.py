"""Jobs for the multi-Redis tests: each execution is noted in a file (outside Redis, whose
primary the tests kill), so "ran once" survives a failover that loses writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from producers import App

app = App("topology")


def _note(key: str) -> None:
    marks = os.environ.get("JOBCORD_TEST_MARKS")
    if marks:
        with open(Path(marks) / "runs.log", "a") as f:  # O_APPEND: one line a run
            f.write(f"{key}\n")


@app.job()
def mark(key: str, sleep_s: float = 0.0) -> str:
    _note(key)
    time.sleep(sleep_s)
    return key


def runs(marks: Path) -> list[str]:
    """Every execution noted so far, in order."""
    try:
        return (marks / "runs.log").read_text().split()
    except FileNotFoundError:
        return []
