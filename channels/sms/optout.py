"""The SMS opt-out (退订) and opt-in (订阅/恢复) words.

A customer unsubscribes with 退订 / TD / T / R in any case, half- or full-width, with stray spaces
or punctuation around it. Opting back in needs an explicit 订阅 / 恢复 (or 恢复订阅 / 重新订阅).
The opt-out itself is kept in the shared store (:class:`channels.optout.OptOutStore`,
conversation ``sms:<phone>``).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Literal

OPT_OUT_WORDS = frozenset({"退订", "TD", "T", "R"})
OPT_IN_WORDS = frozenset({"订阅", "恢复", "恢复订阅", "重新订阅"})

_NOISE = re.compile(r"[\s\u3000.,!?;:~'\"`。，！？；：、…·（）()【】\[\]<>《》\-_]+")


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
