"""The import paths before jobcord's one namespace (``storage``, ``scheduler``, ``producers``,
``consumers`` at the top level), kept working for a deprecation period.

Each old top-level package is a one-line shim that makes its name the very module
``jobcord.<name>`` (not a copy: module state such as the key layout stays one). This finder
then answers ``storage.keys`` and the like with ``jobcord.storage.keys`` itself, but only
while ``sys.modules["storage"]`` is that alias: a user's own ``storage.py`` is imported as
theirs, untouched, and jobcord never imports the old names itself.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["LEGACY_PACKAGES", "alias"]

LEGACY_PACKAGES = ("storage", "scheduler", "producers", "consumers")


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, real: str) -> None:
        self.real = real

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.real)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Already run under its real name; the import system set the alias's spec on it:
        give it back its own (importlib.resources and reload read it)."""
        module.__spec__ = self.real_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None):  # type: ignore[no-untyped-def]
        top = fullname.partition(".")[0]
        if top not in LEGACY_PACKAGES or "." not in fullname:
            return None
        if sys.modules.get(top) is not sys.modules.get(f"jobcord.{top}"):
            return None  # not our alias: someone else's package of that name
        real = f"jobcord.{fullname}"
        if importlib.util.find_spec(real) is None:
            return None
        return ModuleSpec(fullname, _AliasLoader(real))


_FINDER = _AliasFinder()


def alias(name: str) -> None:
    """Make the old top-level package ``name`` the module ``jobcord.<name>``."""
    warnings.warn(
        f"'import {name}' is deprecated: import jobcord.{name} (same names inside)",
        DeprecationWarning,
        stacklevel=3,
    )
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    sys.modules[name] = importlib.import_module(f"jobcord.{name}")
