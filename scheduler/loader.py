"""Load an app from ``module:attribute`` (the CLI's MODULE:APP)."""

from __future__ import annotations

import importlib
import os
import sys

from scheduler.jobspec import AppRegistry
from storage.errors import ConfigurationError

__all__ = ["load_app"]


def load_app(ref: str) -> AppRegistry:
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"app reference {ref!r} must look like 'package.module:app'")
    if os.getcwd() not in sys.path:  # like uvicorn: MODULE is found from the current directory
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, AppRegistry):
        raise ConfigurationError(f"{ref!r} is not a jobcord App (found {type(app).__name__})")
    return app
