"""Masking for logs and replies: 户号, mobile numbers and names (last 4 digits stay visible),
web-chat session ids (bearer secrets: logs show only a short prefix) and WeChat openids (a
follower's identity: logs show only the last 4 characters)."""
from __future__ import annotations

import re
from typing import Optional

_DIGIT = "[0-9\uff10-\uff19]"
_NOT_DIGIT_BEFORE = "(?<![0-9\uff10-\uff19])"
_NOT_DIGIT_AFTER = "(?![0-9\uff10-\uff19])"
# An 11-digit mainland mobile (optionally +86/0086 and 3-4-4 separators), or any 10-digit run
# (a 户号). Longer digit runs (order ids, timestamps in ms) are left alone.
_SENSITIVE = re.compile(
    _NOT_DIGIT_BEFORE
    + "(?:"
    + f"(?:(?:\\+|00)?86[ -]?)?[1\uff11][3-9\uff13-\uff19]{_DIGIT}(?:[ -]?{_DIGIT}{{4}}){{2}}"
    + f"|{_DIGIT}{{10}}"
    + ")"
    + _NOT_DIGIT_AFTER
)
# A web conversation id: "web:" and a session id of 16-64 characters (channels/webchat.py).
# Whoever knows the session id can continue that conversation, so logs keep only its start.
_WEB_PREFIX_CHARS = 12
_WEB_SESSION = re.compile(r"(?<![A-Za-z0-9_-])(web:[A-Za-z0-9_-]{8})[A-Za-z0-9_-]{8,}")
# A WeChat openid (28 characters of [A-Za-z0-9_-] from WeChat; any run of 5 or more here): in a
# conversation id ("wechat:<openid>"), a query parameter (openid=…), a JSON field ("openid",
# "touser") or a pushed message's FromUserName. It names a follower: logs keep its last 4.
_OPENID = re.compile(r"((?<![A-Za-z0-9_-])wechat:|\b(?:openid|touser)=|\b(?:openid|touser)\"\s*:\s*\"|"
                     r"<FromUserName>(?:<!\[CDATA\[)?)[A-Za-z0-9_-]{1,}([A-Za-z0-9_-]{4})(?![A-Za-z0-9_-])")


def _mask_keep_last4(value: Optional[str]) -> str:
    text = "" if value is None else str(value).strip()
    if len(text) <= 4:
        return "*" * len(text)
    return "*" * (len(text) - 4) + text[-4:]


def mask_account(account_number: Optional[str]) -> str:
    """``"3201234567"`` → ``"******4567"``."""
    return _mask_keep_last4(account_number)


def mask_phone(phone: Optional[str]) -> str:
    """``"13812345678"`` → ``"*******5678"``."""
    return _mask_keep_last4(phone)


def mask_name(name: Optional[str]) -> str:
    """``"张三丰"`` → ``"张**"`` (the family name stays)."""
    text = "" if name is None else str(name).strip()
    if len(text) <= 1:
        return "*" * len(text)
    return text[0] + "*" * (len(text) - 1)


def _mask_match(match: re.Match) -> str:
    raw = match.group(0)
    digits = [i for i, ch in enumerate(raw) if ch.isdigit()]
    keep = set(digits[-4:])
    return "".join(ch if (i in keep or not ch.isdigit()) else "*" for i, ch in enumerate(raw))


def mask_openid(openid: Optional[str]) -> str:
    """``"oAbCdEfGhIjKlMnOpQrStUvWx1234"`` → ``"…1234"``."""
    text = "" if openid is None else str(openid).strip()
    return "*" * len(text) if len(text) <= 4 else "…" + text[-4:]


def mask_text(text: Optional[str]) -> str:
    """Mask every 10-digit 户号 and 11-digit mobile inside free text, shorten every web
    conversation id to its prefix and every WeChat openid to its last 4 (for log lines)."""
    if not text:
        return "" if text is None else text
    # Identifiers first: a digit run inside one would be starred and hide it from its pattern.
    masked = _OPENID.sub(r"\1…\2", _WEB_SESSION.sub(r"\1…", str(text)))
    return _SENSITIVE.sub(_mask_match, masked)


def log_conversation_id(conversation_id: Optional[str]) -> str:
    """A conversation id as it may appear in a log line: a web id shortened to ``web:`` and its
    first 8 characters plus "…", a WeChat id to ``wechat:…`` and the openid's last 4, an SMS id
    (``sms:<phone>``) with the number masked. The one rule for the gateway and the action server."""
    text = "" if conversation_id is None else str(conversation_id)
    if text.startswith("web:"):
        return text[:_WEB_PREFIX_CHARS] + "…"
    return mask_text(text)
