"""MODULE:APP as users spell it: a dotted module, a file path, and the mistakes they make."""

from __future__ import annotations

import sys

import pytest

from jobcord.scheduler.jobspec import AppRegistry
from jobcord.scheduler.loader import load_app
from jobcord.storage.errors import ConfigurationError

SOURCE = """
from jobcord.producers import App
app = App("refs-{name}")
other = App("refs-{name}-other")

@app.job()
def hi(x: int) -> int:
    return x
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "refmod.py").write_text(SOURCE.format(name="pkg"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "farmod.py").write_text(SOURCE.format(name="far"))
    yield tmp_path
    for name in ("pkg", "pkg.refmod", "farmod"):
        sys.modules.pop(name, None)
    for entry in (str(tmp_path), str(tmp_path / "elsewhere")):
        while entry in sys.path:
            sys.path.remove(entry)


@pytest.mark.parametrize("ref", ["pkg.refmod:app", "./pkg/refmod.py:app", "pkg/refmod.py:app"])
def test_a_module_or_its_file(folder, ref):
    app = load_app(ref)
    assert isinstance(app, AppRegistry) and app.name == "refs-pkg"


def test_a_file_outside_the_current_folder(folder, tmp_path):
    assert load_app(str(tmp_path / "elsewhere" / "farmod.py") + ":app").name == "refs-far"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "pkg.refmod:ap",
            "module 'pkg.refmod' has no attribute 'ap'; its jobcord Apps: app, other",
        ),
        ("pkg.refmod:hi", "'pkg.refmod:hi' is not a jobcord App (it is a RemoteFunction)"),
        ("nowhere:app", "cannot import module 'nowhere'"),
        ("./missing.py:app", "names the file './missing.py', which is not a .py file"),
        ("pkg.refmod", "must look like 'package.module:app'"),
        ("..pkg:app", "cannot import module '..pkg'"),
    ],
)
def test_mistakes_say_what_is_wrong(folder, ref, message):
    with pytest.raises(ConfigurationError) as caught:
        load_app(ref)
    assert message in str(caught.value)


def test_an_import_error_inside_the_app_is_the_apps_own(folder):
    (folder / "broken.py").write_text("import no_such_dependency_here\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_here"):
        load_app("broken:app")  # the user's traceback is what they need, not ours
    sys.modules.pop("broken", None)
