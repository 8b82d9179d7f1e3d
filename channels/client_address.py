"""Which address a request really comes from, behind the utility's reverse proxies.

``X-Forwarded-For`` is written by whoever sends the request, so it is believed only as far as
it was written by a trusted proxy (``GATEWAY_TRUSTED_PROXIES``): starting from the connection's
peer, each hop that is a trusted proxy vouches for the hop to its left in the header, and the
first address that is not a trusted proxy is the client. A request from an untrusted peer is
that peer, whatever its header says.

IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``, what a dual-stack socket reports for an IPv4
peer) are treated as the IPv4 address everywhere. Nothing here raises on malformed input: an
address that cannot be parsed matches no network.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def parse_networks(raw: str, name: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.168.1.7, 2001:db8::/32"`` → networks (a bare address is a /32 or
    /128); empty → none. Raises ValueError naming ``name`` for an entry that is not one."""
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(f"{name}: {part!r} is not an IP address or CIDR") from None
        mapped = getattr(network.network_address, "ipv4_mapped", None)
        if mapped is not None and network.prefixlen >= 96:
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
        networks.append(network)
    return tuple(networks)


def parse_address(value: str | None) -> Address | None:
    """An address from a peer or a header hop (``1.2.3.4``, ``1.2.3.4:567``, ``[2001:db8::1]:567``,
    ``::ffff:1.2.3.4`` → IPv4), or None if it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text, bracket, port = text[1:].partition("]")
        if not bracket or (port and not port[1:].isdigit()):
            return None
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def address_in(address: str | None, networks: Iterable[Network]) -> bool:
    """Is ``address`` inside one of ``networks``? False for anything unparseable."""
    ip = parse_address(address)
    if ip is None:
        return False
    return any(ip in n for n in networks)


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: Iterable[Network]) -> str:
    """The client's address: ``peer`` unless it is a trusted proxy, in which case the right-most
    ``X-Forwarded-For`` hop that is not itself a trusted proxy. A malformed hop ends the walk at
    the last address known good. ``""`` when not even the peer is an address."""
    trusted = tuple(trusted)
    current = parse_address(peer)
    if current is None:
        return ""
    for hop in reversed((forwarded_for or "").split(",") if trusted else []):
        if not any(current in n for n in trusted):
            break
        ip = parse_address(hop)
        if ip is None:
            break
        current = ip
    return str(current)
