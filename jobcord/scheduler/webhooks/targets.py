"""Where webhooks may go: http(s) only, and never to private, loopback, link-local, shared
(100.64.0.0/10, carrier-grade NAT and cloud metadata) or reserved addresses unless an operator
allows those networks (JOBCORD_WEBHOOK_ALLOWED_NETWORKS). An IPv6 address that carries an
IPv4 one (v4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96) is judged by the IPv4 address it leads
to; 6to4 (2002::/16) and local-use NAT64 (64:ff9b:1::/48) are never public. An allowed network
matches the address or the IPv4 address it carries. Hosts are checked and sent in their ASCII
(IDNA) form.

Checked at submit, and again at delivery, where the connection goes to the address that was
just checked (a DNS answer that changes in between cannot redirect it: no rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from jobcord.storage.errors import JobcordError

__all__ = ["WebhookTargetRefused", "resolve_target", "parse_networks"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookTargetRefused(JobcordError, ValueError):
    http_status = 422


def parse_networks(spec: str) -> list[IPNetwork]:
    try:
        return [ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()]
    except ValueError as exc:
        raise ValueError(f"JOBCORD_WEBHOOK_ALLOWED_NETWORKS: {exc}") from None


Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Never public, whatever this Python's ``ipaddress`` tables say: carrier-grade NAT (cloud
#: metadata such as 100.100.100.200 lives there), IETF protocol assignments, benchmarking.
_NOT_PUBLIC_V4 = [
    ipaddress.IPv4Network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15")
]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64: the last 32 bits
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use NAT64: never public


def embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (v4-mapped, 6to4, NAT64), if any."""
    if ip.version != 6:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _public(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is not None:
        return False  # 6to4 is deprecated (RFC 7526) and relayed who knows where
    embedded = embedded_ipv4(ip)
    if embedded is not None:  # judged by where it leads
        return _public(embedded)
    if ip in _NAT64_LOCAL or any(ip in net for net in _NOT_PUBLIC_V4 if ip.version == 4):
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or getattr(ip, "is_site_local", False)
    )


def _allowed(ip: Address, allowed: list[IPNetwork]) -> bool:
    embedded = embedded_ipv4(ip)
    return any(a in net for a in (ip, embedded) if a is not None for net in allowed)


def _ascii_host(host: str) -> str:
    """The host as it goes on the wire (IDNA; fullwidth digits become ASCII ones)."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise WebhookTargetRefused(f"webhook_endpoint host {host!r} is not a valid name") from None


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
    host = _ascii_host(parts.hostname)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookTargetRefused(f"webhook_endpoint host does not resolve: {exc}") from None
    # An IPv6 answer may carry a zone ("fe80::1%eth0"): the address is what is checked.
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for ip in addresses:
        if not _public(ip) and not _allowed(ip, allowed):
            raise WebhookTargetRefused(
                f"webhook_endpoint {host!r} resolves to {ip}, a private, loopback, "
                "link-local, shared (CGNAT) or reserved address; allow it with "
                "JOBCORD_WEBHOOK_ALLOWED_NETWORKS"
            )
    return host, port, str(addresses[0])
