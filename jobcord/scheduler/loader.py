"""Load an app from ``module:attribute`` (the CLI's MODULE:APP), or ``path/to/file.py:app``."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from jobcord.scheduler.jobspec import AppRegistry
from jobcord.storage.errors import ConfigurationError

__all__ = ["load_app"]


def _module_name(spelled: str) -> str:
    """``pkg/mod.py`` or ``./mod.py`` -> the dotted name it has from the current directory;
    a file elsewhere is found from its own directory (like ``python path/to/file.py``)."""
    if not (spelled.endswith(".py") or "/" in spelled or os.sep in spelled):
        return spelled
    path = Path(spelled).expanduser()
    if path.suffix != ".py" or not path.is_file():
        raise ConfigurationError(
            f"app reference names the file {spelled!r}, which is not a .py file"
        )
    path = path.resolve()
    try:
        return ".".join(path.relative_to(Path.cwd().resolve()).with_suffix("").parts)
    except ValueError:  # outside the current directory
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        return path.stem


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):  # the module itself, not its import
            raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
        raise
    except (TypeError, ValueError) as exc:  # "..mod", "" and other names import cannot take
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc


def load_app(ref: str) -> AppRegistry:
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"app reference {ref!r} must look like 'package.module:app'")
    if os.getcwd() not in sys.path:  # like uvicorn: MODULE is found from the current directory
        sys.path.insert(0, os.getcwd())
    module = _import(_module_name(module_name))
    app = getattr(module, attr, None)
    if isinstance(app, AppRegistry):
        return app
    apps = sorted(name for name, value in vars(module).items() if isinstance(value, AppRegistry))
    hint = f"; its jobcord App{'s' if len(apps) > 1 else ''}: {', '.join(apps)}" if apps else ""
    if app is None and not hasattr(module, attr):
        raise ConfigurationError(f"module {module.__name__!r} has no attribute {attr!r}{hint}")
    raise ConfigurationError(f"{ref!r} is not a jobcord App (it is a {type(app).__name__}){hint}")
