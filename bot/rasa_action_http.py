"""Rasa runtime speed-up ``http``: Rasa's calls to the action server reuse their connections.

``EndpointConfig.request`` (every call of a custom action, of a form's validation action and
of ``action_extract_slots`` when a slot mapping is custom) opens ``async with self.session()``:
a new aiohttp ``ClientSession`` with its own connector, a new TCP connection to the action
server, and both closed again after one request. Here ``EndpointConfig.session`` hands out one
session per endpoint and event loop, kept open, whose pool keeps connections alive for
``KEEPALIVE_SECONDS``, less than the keep-alive of the action server's Sanic (5 s), so the
client lets an idle connection go before the server would close it under a request. The
session is built as Rasa builds its own (the endpoint's headers, basic auth, the total timeout)
and has no connection limit (as many requests in flight as before); ``request`` itself is
Rasa's, unchanged: same URL, headers, parameters, body, errors. ``close_sessions()`` closes them
when the server stops (``bot/rest_channel.py``).

Registered in ``bot/rasa_runtime.py`` under the name ``http`` of ``RASA_RUNTIME_SPEEDUPS``.
"""
from __future__ import annotations

import asyncio
import weakref
from typing import Any

# Seconds an idle connection to the action server stays in the pool (Sanic's keep-alive: 5 s).
KEEPALIVE_SECONDS = 2.0
# Attribute of an EndpointConfig: its kept sessions by event loop.
SESSIONS = "_powerdesk_sessions"
_open: "weakref.WeakSet[Any]" = weakref.WeakSet()


class Sessions(weakref.WeakKeyDictionary):
    """An endpoint's kept sessions by event loop; copies and pickles of the endpoint start
    without them."""

    def __copy__(self) -> "Sessions":
        return Sessions()

    def __deepcopy__(self, _memo: dict) -> "Sessions":
        return Sessions()

    def __reduce__(self) -> tuple:
        return Sessions, ()


class KeptSession:
    """What ``EndpointConfig.session()`` returns: ``async with`` gives the kept session and
    leaves it open."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def __aenter__(self) -> Any:
        return self.session

    async def __aexit__(self, *_exc: Any) -> None:
        return None


def install() -> None:
    """Replaces ``EndpointConfig.session`` by one kept session per endpoint and event loop."""
    import aiohttp
    from rasa.utils.endpoints import DEFAULT_REQUEST_TIMEOUT, EndpointConfig

    def session(self: EndpointConfig) -> KeptSession:
        loop = asyncio.get_running_loop()
        kept = self.__dict__.get(SESSIONS)
        if kept is None:
            kept = self.__dict__[SESSIONS] = Sessions()
        current = kept.get(loop)
        if current is None or current.closed:
            auth = (aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"])
                    if self.basic_auth else None)
            current = kept[loop] = aiohttp.ClientSession(
                headers=self.headers, auth=auth, timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS))
            _open.add(current)
        return KeptSession(current)

    EndpointConfig.session = session


async def close_sessions() -> int:
    """Closes the kept sessions of the running event loop; returns how many."""
    loop = asyncio.get_running_loop()
    mine = [s for s in list(_open) if not s.closed and s._loop is loop]
    for s in mine:
        await s.close()
    return len(mine)
