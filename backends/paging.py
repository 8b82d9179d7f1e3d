"""Keyset pagination of the reference backends' bulk listings (never OFFSET).

A listing takes ``limit`` (1..1000, default 100) and the opaque ``after`` cursor of the page
before, and answers ``next``: the cursor of the following page, or null after the last one. A
page may hold fewer than ``limit`` items (even none) when the listing filters rows the database
cannot; callers follow ``next`` until it is null.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from aiohttp import web

from backends.web import ascii_digits, bad_request

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_CHARS = 100
# Rows a filtered listing reads per request, at most, as a multiple of ``limit``.
SCAN_FACTOR = 10


@dataclass(frozen=True)
class PageRequest:
    after: Optional[str]
    limit: int


def page_request(request: web.Request) -> PageRequest:
    """``after`` and ``limit`` from the query string, or a 400."""
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not ascii_digits(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad_request(f"limit must be an integer from 1 to {MAX_LIMIT}")
    after = request.query.get("after") or None
    if after is not None and len(after) > MAX_CURSOR_CHARS:
        raise bad_request("after is not a cursor of this listing")
    return PageRequest(after, int(raw))
