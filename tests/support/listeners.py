"""What the machine listens on, read from the kernel (``/proc/net/tcp``, ``/proc/net/tcp6``).

Lets a test check which address a server bound without sending it a packet from off-loopback.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path

_LISTEN = "0A"


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # IPv6: four 32-bit words, each in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def listening_addresses(port: int) -> set[str]:
    """The local addresses on which some socket listens on TCP ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == _LISTEN and int(port_hex, 16) == port:
                found.add(_address(address))
    return found


def loopback_only(port: int) -> bool:
    """Something listens on ``port``, and only on loopback addresses."""
    addresses = listening_addresses(port)
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
