"""Databases of the session's Redis apart from the long-lived gateways' one."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# One database per test module that needs its own; the session's gateways all use database 0.
BROADCAST_SOURCES_DB = 8
BROADCAST_ENGINE_DB = 9
BINDING_INDEX_DB = 10
CONSOLE_BROWSER_DB = 11
DELIVERY_GATEWAY_DB = 12
CUSTOMER_STORE_CODES_DB = 13
VERIFICATION_LIMITS_DB = 14


def redis_database(url: str, db: int) -> str:
    """``url`` (``redis://host:port[/n]``) pointing at database ``db`` instead.

    Every gateway started for the whole session uses database 0 and consumes the outbound
    requests stream (``pd:outbound:requests``) there, deleting the entries it delivered. A test
    that reads that stream, or runs a consumer of its own, uses a database no such gateway
    uses, so no other consumer takes its entries.
    """
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))
