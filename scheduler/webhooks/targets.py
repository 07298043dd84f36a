"""Where webhooks may go: http(s) only, and never to private, loopback, link-local or
metadata addresses unless an operator allows those networks (JOBCORD_WEBHOOK_ALLOWED_NETWORKS).

Checked at submit, and again at delivery, where the connection goes to the address that was
just checked (a DNS answer that changes in between cannot redirect it: no rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from storage.errors import JobcordError

__all__ = ["WebhookTargetRefused", "resolve_target", "parse_networks"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookTargetRefused(JobcordError, ValueError):
    http_status = 422


def parse_networks(spec: str) -> list[IPNetwork]:
    try:
        return [ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()]
    except ValueError as exc:
        raise ValueError(f"JOBCORD_WEBHOOK_ALLOWED_NETWORKS: {exc}") from None


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or getattr(ip, "is_site_local", False)
    )


def resolve_target(url: str, allowed: list[IPNetwork]) -> tuple[str, int, str]:
    """-> (host, port, checked IP address to connect to); raises WebhookTargetRefused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookTargetRefused(f"webhook_endpoint must be http or https, got {url!r}")
    if not parts.hostname:
        raise WebhookTargetRefused(f"webhook_endpoint has no host: {url!r}")
    if parts.username or parts.password:
        raise WebhookTargetRefused("webhook_endpoint must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookTargetRefused(f"webhook_endpoint has a bad port: {url!r}") from None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookTargetRefused(f"webhook_endpoint host does not resolve: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for ip in addresses:
        if not _public(ip) and not any(ip in net for net in allowed):
            raise WebhookTargetRefused(
                f"webhook_endpoint {parts.hostname!r} resolves to {ip}, a private, loopback, "
                "link-local or reserved address; allow it with JOBCORD_WEBHOOK_ALLOWED_NETWORKS"
            )
    return parts.hostname, port, str(addresses[0])
