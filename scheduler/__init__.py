"""Deprecated import path: this is ``jobcord.scheduler`` (see jobcord/_legacy.py)."""

from jobcord._legacy import alias

alias(__name__)
