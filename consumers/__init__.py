"""Deprecated import path: this is ``jobcord.consumers`` (see jobcord/_legacy.py)."""

from jobcord._legacy import alias

alias(__name__)
