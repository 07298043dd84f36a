"""The dashboard: ``/dashboard`` on the API (``routes``), its filters, views and templates."""

from .routes import dashboard_router, mount_dashboard_static

__all__ = ["dashboard_router", "mount_dashboard_static"]
