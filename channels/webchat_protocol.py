"""The web chat's side of Rasa's socket.io protocol: session ids and ``bot_uttered`` events.

Shared by the socket.io server (:mod:`channels.webchat`) and the web adapter and outbox
(:mod:`channels.webchat_outbox`), which renders every message for a web visitor.
"""
from __future__ import annotations

import re
import uuid
from typing import Any

from channels.messages import Reply

# Session ids are bearer secrets (they own the conversation and its bound 户号): only accept
# ids long and random-looking enough, such as the uuid4 hex we issue.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def valid_session_id(value: Any) -> bool:
    """Is ``value`` a session id we accept from a client?"""
    return isinstance(value, str) and bool(_SESSION_ID.fullmatch(value))


def new_session_id() -> str:
    """A fresh, unguessable session id."""
    return uuid.uuid4().hex


def bot_uttered_events(reply: Reply) -> list[dict[str, Any]]:
    """The ``bot_uttered`` payloads Rasa's SocketIOOutput would emit for ``reply``."""
    events: list[dict[str, Any]] = []
    if reply.text or reply.buttons:
        parts = [p for p in reply.text.strip().split("\n\n")] if reply.text.strip() else [""]
        if reply.buttons:
            events.extend({"text": p, "quick_replies": []} for p in parts)
            events[-1]["quick_replies"] = [
                {"content_type": "text", "title": b.title, "payload": b.payload}
                for b in reply.buttons]
        else:
            events.extend({"text": p} for p in parts if p)
    if reply.image:
        events.append({"attachment": {"type": "image", "payload": {"src": reply.image}}})
    if reply.custom:
        events.append(dict(reply.custom))
    return events
