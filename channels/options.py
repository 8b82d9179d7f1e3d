"""Numbered options for the text-only channels (SMS, WeChat): one implementation for both.

Text channels have no buttons: a channel's renderer lists the buttons of an answer as numbered
options ("回复1 …" on SMS, "1. …" on WeChat), numbered across all the replies of the answer, and
:class:`OptionMemory` remembers them per conversation in Redis (``pd:options:<conversation id>``)
for a configured time. The customer picks one with a number in any usual form
(:func:`option_number`: ``2``, ``２``, ``二``, ``第2个``, ``选2``, ``2。``). The options stay after a
pick (the customer may pick again) until a newer answer is sent: its own options replace them,
and an answer without options clears them, so a number never picks an option of an older
question.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Any, NamedTuple

KEY_PREFIX = "pd:options:"
MAX_OPTION = 99

_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_NUMBER = "[一二两三四五六七八九]?十[一二三四五六七八九]?|[一二两三四五六七八九]"
_PICK = re.compile(rf"(?:第|选择?)?\s*(\d{{1,2}}|{_CN_NUMBER})\s*(?:个|项|号|条)?")
_TRAILING = "。.、．，,！!？?～~ "


class Option(NamedTuple):
    """A numbered option: what the customer saw and the payload the number stands for."""

    title: str
    payload: str


def _chinese(token: str) -> int:
    if "十" not in token:
        return _CN_DIGITS[token]
    tens, _, ones = token.partition("十")
    return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)


def option_number(text: str) -> int | None:
    """The option number a customer's message picks, else None.

    ASCII or full-width digits, Chinese numerals up to 九十九 (一, 两, 十二, 二十), optionally as
    第N个 / 第N项 / 第N号 / 选N / 选择N, with trailing punctuation; 1 to 99.
    """
    cleaned = unicodedata.normalize("NFKC", text or "").strip().rstrip(_TRAILING)
    match = _PICK.fullmatch(cleaned)
    if not match:
        return None
    token = match.group(1)
    number = int(token) if token.isdigit() else _chinese(token)
    return number if 1 <= number <= MAX_OPTION else None


def options_key(conversation_id: str) -> str:
    """Redis key of the options last offered in ``conversation_id`` (``sms:<phone>``, …)."""
    return KEY_PREFIX + conversation_id


class OptionMemory:
    """The options last offered per conversation, in Redis for ``ttl_seconds``."""

    def __init__(self, redis: Any, ttl_seconds: int) -> None:
        self._redis = redis
        self.ttl_seconds = max(1, int(ttl_seconds))  # Redis refuses an expiry of 0

    async def remember(self, conversation_id: str, options: Iterable[tuple[str, str]]) -> None:
        """A newer answer was sent: its ``options`` (numbered 1… across all its replies) replace
        the older ones; an answer without options clears them."""
        options = [Option(str(title), str(payload)) for title, payload in options]
        if options:
            await self._redis.set(options_key(conversation_id),
                                  json.dumps(options, ensure_ascii=False), ex=self.ttl_seconds)
        else:
            await self._redis.delete(options_key(conversation_id))

    async def offered(self, conversation_id: str) -> list[Option]:
        """The options currently on offer (empty when none or expired)."""
        raw = await self._redis.get(options_key(conversation_id))
        if not raw:
            return []
        try:
            return [Option(str(title), str(payload)) for title, payload in json.loads(raw)]
        except (ValueError, TypeError):
            return []

    async def pick(self, conversation_id: str, text: str) -> Option | None:
        """The option ``text`` picks, or None when it is not a number of an option on offer.
        The options are kept: the customer may pick again."""
        number = option_number(text)
        if number is None:
            return None
        options = await self.offered(conversation_id)
        return options[number - 1] if number <= len(options) else None
