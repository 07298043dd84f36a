"""Prometheus figures of a consumer or scheduler process, served on their own port.

The API serves ``/metrics`` itself; a consumer (``jobcord worker --metrics-port P``) and a
scheduler (``jobcord scheduler --metrics-port P``) have no HTTP server, so this starts
prometheus_client's small one on a daemon thread. Off unless a port is given.
"""

from __future__ import annotations

import structlog
from prometheus_client import start_http_server

from jobcord.storage.errors import ConfigurationError

__all__ = ["serve_metrics"]

log = structlog.get_logger("jobcord.metrics")


def serve_metrics(host: str, port: int | None) -> int | None:
    """Serve this process's registry on ``host:port`` (0: any free port); returns the bound
    port, or None when ``port`` is None. A taken port is a clear error, not a traceback."""
    if port is None:
        return None
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise ConfigurationError(f"--metrics-port {port}: cannot listen on {host}: {exc}") from exc
    bound = int(server.server_address[1])
    log.info("metrics served", url=f"http://{host}:{bound}/metrics")
    return bound
