"""Deprecated import path: this is ``jobcord.storage`` (see jobcord/_legacy.py)."""

from jobcord._legacy import alias

alias(__name__)
