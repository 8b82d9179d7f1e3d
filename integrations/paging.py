"""Keyset-paged listings of the backends: one page, and every page in turn.

A listing answers ``{<items>: [...], "next": cursor | null}``; the next page is asked for with
``after=<cursor>``. A page may be short (even empty) before the last one, so callers follow
``next`` until it is null; only one page is held at a time.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Optional, TypeVar

from integrations.errors import ErrorFamily
from integrations.http import to_list

T = TypeVar("T")

MAX_PAGE_SIZE = 1000  # the backends' largest ``limit``


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next: Optional[str]  # cursor of the following page; None after the last one


def page_from_json(d: Any, key: str, parse: Callable[[Any], T]) -> Page[T]:
    """``{key: [...], "next": ...}`` as a :class:`Page` (raises KeyError/TypeError if malformed)."""
    cursor = d["next"]
    if cursor is not None and not isinstance(cursor, str):
        raise TypeError("next is not a string or null")
    return Page(tuple(parse(item) for item in to_list(d[key])), cursor)


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}")
    return limit


async def every_page(fetch: Callable[[Optional[str], int], Awaitable[Page[T]]], page_size: int,
                     errors: ErrorFamily, service: str) -> AsyncIterator[tuple[T, ...]]:
    """The items of every page, a page at a time (empty pages skipped); ``page_size`` above
    the backends' maximum is asked for in pages of the maximum. A cursor that does not move
    raises the family's bad_response (a backend bug must not loop forever)."""
    if page_size < 1:
        raise ValueError("page_size must be positive")
    after: Optional[str] = None
    while True:
        page = await fetch(after, min(page_size, MAX_PAGE_SIZE))
        if page.items:
            yield page.items
        if page.next is None:
            return
        if page.next == after:
            raise errors.bad_response(f"{service}: the listing's cursor did not move ({after!r})")
        after = page.next
