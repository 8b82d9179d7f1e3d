"""Turn gateway Replies into WeChat customer-service texts.

WeChat text messages have no buttons: a button whose payload is a URL becomes a link
(``<a href>``, which WeChat renders in text messages); any other button becomes a numbered option
the customer answers with the number (remembered per conversation by
:class:`channels.options.OptionMemory`, which also reads the customer's number).  Texts longer
than WeChat's limit are split at sentence boundaries.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from channels.options import Option

OPTIONS_HINT = "请回复序号进行选择。"
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…\n])")
_CLAUSE_END = re.compile(r"(?<=[，,、：:）)])")


@dataclass(frozen=True)
class Rendered:
    """Texts to send in order, and the numbered options they offered (empty when none)."""

    texts: tuple[str, ...]
    options: tuple[Option, ...]


def _blen(text: str) -> int:
    return len(text.encode("utf-8"))


def _hard_split(piece: str, limit: int) -> list[str]:
    out, current = [], ""
    for char in piece:
        if _blen(current + char) > limit:
            out.append(current)
            current = ""
        current += char
    if current:
        out.append(current)
    return out


def _pack(pieces: Iterable[str], limit: int) -> list[str]:
    chunks, current = [], ""
    for piece in pieces:
        if not piece:
            continue
        if _blen(current + piece) <= limit:
            current += piece
            continue
        if current:
            chunks.append(current)
        current = ""
        if _blen(piece) <= limit:
            current = piece
        else:
            clauses = [c for c in _CLAUSE_END.split(piece) if c]
            if all(_blen(c) <= limit for c in clauses):
                parts = _pack(clauses, limit)
            else:
                parts = _hard_split(piece, limit)
            chunks.extend(parts[:-1])
            current = parts[-1]
    if current:
        chunks.append(current)
    return chunks


def split_text(text: str, limit_bytes: int = 2048) -> list[str]:
    """Split ``text`` into chunks of at most ``limit_bytes`` UTF-8 bytes, preferring sentence
    ends (。！？; and newlines), then clause ends (，、：), then any character."""
    text = text.strip()
    if not text:
        return []
    chunks = _pack(_SENTENCE_END.split(text), limit_bytes)
    return [c.strip() for c in chunks if c.strip()]


def _is_link(payload: str) -> bool:
    return payload.startswith(("https://", "http://"))


def render_replies(replies: Sequence[Any], limit_bytes: int = 2048) -> Rendered:
    """Render ``replies`` (objects with ``text``, ``buttons``, ``image``) for WeChat.

    Options are numbered across the whole batch so that every number the customer sees is
    unique; the last batch sent is the one the numbers refer to (see channels.options).
    """
    texts: list[str] = []
    options: list[Option] = []
    for reply in replies:
        lines: list[str] = []
        text = (getattr(reply, "text", None) or "").strip()
        if text:
            lines.append(text)
        image = getattr(reply, "image", None)
        if image and _is_link(str(image)):
            lines.append(f'<a href="{escape(str(image), quote=True)}">查看图片</a>')
        numbered = []
        for button in getattr(reply, "buttons", ()) or ():
            title, payload = str(button.title).strip(), str(button.payload or "").strip()
            if not title:
                continue
            if _is_link(payload):
                lines.append(f'<a href="{escape(payload, quote=True)}">{escape(title, quote=False)}</a>')
            elif payload or title:
                options.append(Option(title, payload or title))
                numbered.append(f"{len(options)}. {title}")
        if numbered:
            lines.append("\n".join(numbered) + "\n" + OPTIONS_HINT)
        if lines:
            texts.extend(split_text("\n".join(lines), limit_bytes))
    return Rendered(tuple(texts), tuple(options))

