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

Every call also carries the whole domain (``domain.as_dict()``: the same dict object for a
loaded model, about 16 kB of JSON here), serialised again each time. The kept session's JSON
encoder (``encode_body``) keeps the text of the last domain dict it encoded, holding that dict,
and splices it into the body when the next body's ``"domain"`` is the very same object: the
same bytes as ``json.dumps(body)``.

Registered in ``bot/rasa_runtime.py`` under the name ``http`` of ``RASA_RUNTIME_SPEEDUPS``.
"""
from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from bot.node_local import NodeLocal

# Seconds an idle connection to the action server stays in the pool (Sanic's keep-alive: 5 s).
KEEPALIVE_SECONDS = 2.0
# Attribute of an EndpointConfig: its kept sessions by event loop.
SESSIONS = "_powerdesk_sessions"
_open: "weakref.WeakSet[Any]" = weakref.WeakSet()


class Sessions(NodeLocal, weakref.WeakKeyDictionary):
    """An endpoint's kept sessions by event loop; copies and pickles of the endpoint start
    without them."""


class DomainText:
    """The JSON text of the last domain dict encoded (held, so its identity cannot be reused)."""

    domain: Any = None
    text: str = ""


_domain = DomainText()


def encode_body(body: Any) -> str:
    """``json.dumps(body)``, with the text of a ``"domain"`` dict encoded before reused when the
    body's domain is that same object (Rasa's domain dicts are not changed once loaded)."""
    domain = body.get("domain") if type(body) is dict else None
    if domain is None or type(domain) is not dict or next(reversed(body)) != "domain":
        return json.dumps(body)
    if domain is not _domain.domain:
        _domain.text, _domain.domain = json.dumps(domain), domain
    rest = json.dumps({key: value for key, value in body.items() if key != "domain"})
    return (rest[:-1] + ", " if len(rest) > 2 else "{") + '"domain": ' + _domain.text + "}"


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
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS),
                json_serialize=encode_body)
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
