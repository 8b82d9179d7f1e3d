"""Channel-neutral message types exchanged between the channels and the router."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


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


Purpose = Literal["reply", "agent", "notice"]
PURPOSES: tuple[Purpose, ...] = ("reply", "agent", "notice")


# Notices the customer has just asked for (a one-time code, the confirmation of 退订/订阅):
# transactional, not marketing.
TRANSACTIONAL_KINDS = frozenset({"verification_code", "optout_confirm", "optin_confirm"})


@dataclass(frozen=True)
class Notice:
    """A proactive message of a known ``kind`` (e.g. ``outage_notice`` with area, start, end
    and reason); each channel renders it its own way (SMS template, WeChat template message,
    web chat card). ``urgent`` notices are exempt from quiet hours.

    ``key``, when set, identifies this notice to this customer for good (a broadcast sets
    ``bc:<campaign id>:<customer>``): a channel that is handed the same key twice sends it at
    most once where its transport allows (an idempotency key), and delivery reports carry it.
    """

    kind: str
    params: dict[str, str] = field(default_factory=dict)
    urgent: bool = False
    key: str = ""

    @property
    def transactional(self) -> bool:
        """Asked for by the customer (:data:`TRANSACTIONAL_KINDS`): opt-out, quiet hours and
        the notice budget do not apply (see :mod:`channels.delivery`)."""
        return self.kind in TRANSACTIONAL_KINDS


DeliveryStatus = Literal["sent", "queued", "skipped", "failed"]


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one delivery.

    ``sent``: handed to the channel's transport; ``queued``: stored, goes out at ``when`` (unix
    time; None = as soon as the customer is reachable); ``skipped``: deliberately not sent
    (``reason``: e.g. ``opted_out``, ``not_following``, ``no_channel``); ``failed``: could not be
    sent (``reason``), and ``retry`` says whether trying again later may help.
    """

    status: DeliveryStatus
    reason: str = ""
    when: float | None = None
    retry: bool = False


# ``Deliverer.deliver`` (channels.delivery) as the channels receive it: the one way to send.
Deliver = Callable[[str, "Sequence[Reply] | Notice", Purpose], Awaitable[DeliveryResult]]


class ChannelAdapter(Protocol):
    """What a channel implements to be sent to: render and transport only.

    ``name`` is the channel's conversation-id prefix (``web``, ``wechat``, ``sms``). ``send``
    gets the user id on that channel and either ordinary replies (purpose ``reply`` or
    ``agent``) or a :class:`Notice` (purpose ``notice``). Opt-out, quiet hours, rate limits,
    ordering, metrics and logging are done once, before it, by the delivery facade.
    """

    name: str

    async def send(self, user_id: str, content: Sequence[Reply] | Notice,
                   purpose: Purpose) -> DeliveryResult: ...
