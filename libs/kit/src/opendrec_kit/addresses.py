"""Who a request comes from behind proxies (issue 12), one rule for the gateway and the charger gateway.

The client is the TCP peer, unless the peer is one of the trusted proxies (a load balancer in front of the gateway,
the gateway in front of the charger gateway): then it is the right-most X-Forwarded-For entry that is not a trusted
proxy. Nothing a client writes in X-Forwarded-For counts otherwise, so no client can pass itself off as another.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client of a request: the peer, or behind trusted proxies the right-most untrusted forwarded address."""
    address = peer or "unknown"
    if not trusted or not _trusted(address, trusted) or not forwarded_for:
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, trusted):
            return hop[:64]  # whatever it says, bounded: it becomes a limiter or throttle key
    return address
