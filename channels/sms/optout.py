"""Opt-out (退订) and opt-in (订阅/恢复) of proactive SMS, kept in Redis.

A customer unsubscribes with 退订 / TD / T / R in any case, half- or full-width, with stray spaces
or punctuation around it. Opting back in needs an explicit 订阅 / 恢复 (or 恢复订阅 / 重新订阅).
The list is persistent (no expiry) and shared by every gateway instance.
"""
from __future__ import annotations

import re
import time
import unicodedata
from typing import Literal

OPT_OUT_WORDS = frozenset({"退订", "TD", "T", "R"})
OPT_IN_WORDS = frozenset({"订阅", "恢复", "恢复订阅", "重新订阅"})

_NOISE = re.compile(r"[\s\u3000.,!?;:~'\"`。，！？；：、…·（）()【】\[\]<>《》\-_]+")

OPT_OUT_KEY = "pd:sms:optout"


def _canonical(text: str) -> str:
    return _NOISE.sub("", unicodedata.normalize("NFKC", text or "")).upper()


def keyword(text: str) -> Literal["opt_out", "opt_in"] | None:
    """Whether ``text`` is an opt-out or opt-in command (the whole message, not a mention)."""
    word = _canonical(text)
    if word in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS:
        return "opt_in"
    return None


class OptOutStore:
    """The numbers that unsubscribed, as a Redis hash ``phone -> unix time of the opt-out``."""

    def __init__(self, redis) -> None:
        self._redis = redis

    async def opt_out(self, phone: str) -> bool:
        """Unsubscribe ``phone``; True only the first time (so the confirmation goes once)."""
        return bool(await self._redis.hsetnx(OPT_OUT_KEY, phone, str(int(time.time()))))

    async def opt_in(self, phone: str) -> bool:
        """Subscribe ``phone`` again; True when it had opted out."""
        return bool(await self._redis.hdel(OPT_OUT_KEY, phone))

    async def is_opted_out(self, phone: str) -> bool:
        """True when ``phone`` must receive no proactive SMS."""
        return bool(await self._redis.hexists(OPT_OUT_KEY, phone))
