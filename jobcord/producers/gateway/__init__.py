"""The HTTP gateway (FastAPI). Imported only by ``jobcord api`` and ``jobcord dev``."""

from .app import create_app

__all__ = ["create_app"]
