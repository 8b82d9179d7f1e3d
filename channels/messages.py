"""Channel-neutral message types exchanged between the channels and the router."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """One inbound customer message, already decoded from its channel's protocol.

    ``user_id`` is the customer's id on that channel (web session id, WeChat openid, phone);
    ``payload`` is set when the customer picked a button (e.g. ``/inform{"month":"上个月"}``)
    and is what Rasa receives instead of ``text``; ``meta`` travels to Rasa as metadata.
    """

    channel: str
    user_id: str
    text: str
    payload: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def conversation_id(self) -> str:
        """The product-wide conversation id, ``<channel>:<user id>`` (Rasa's sender id)."""
        return f"{self.channel}:{self.user_id}"


@dataclass(frozen=True)
class Button:
    """A quick reply: ``title`` is shown, ``payload`` is sent back when it is picked."""

    title: str
    payload: str


@dataclass(frozen=True)
class Reply:
    """One outbound bot message; channels render it their own way."""

    text: str
    buttons: tuple[Button, ...] = ()
    image: str | None = None
    custom: dict[str, Any] | None = None
