"""WeChat template messages (模板消息) per kind of notice, from ``bot/wechat_templates.yml``.

Outside the 48-hour customer-service window, and for notices, the official account can only
send template messages: a template chosen in the 公众平台 (模板消息 → 我的模板) has an id and
named fields (``thing1``, ``time2`` …; older templates ``first``/``keyword1``/``remark``), each
sent as ``{"value": "…"}``. The file maps a kind (a notice's kind such as ``outage_notice``,
or ``generic_reply`` for ordinary replies outside the window) to its template id and, per
field, a text with ``${param}`` placeholders filled from the notice's parameters (``${content}``
for replies); an optional ``text`` is the customer-service text of a notice of that kind, used
inside the window when no template id is configured.

WeChat rejects (47003) a value longer than its field type allows (类目模板: ``thing`` 20
characters, ``character_string`` 32 …): notice values are shortened to fit (ending in "…"); a
reply that does not fit is not sent as a template (the caller decides what to do instead).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from channels.config_error import ConfigError

DEFAULT_TEMPLATES_FILE = Path(__file__).resolve().parents[2] / "bot" / "wechat_templates.yml"
REPLY_KIND = "generic_reply"
REPLY_PARAM = "content"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD_TYPE = re.compile(r"([a-z_]+?)_?\d*$")
# Length limits of 类目模板 field types (WeChat's template-message documentation); older
# templates' fields (first, keyword1, remark) are folded beyond 20 characters, not refused.
FIELD_LIMITS = {"thing": 20, "short_thing": 5, "character_string": 32, "number": 32,
                "letter": 32, "symbol": 5, "phrase": 5, "name": 10, "phone_number": 17,
                "car_number": 8}
LEGACY_LIMIT = 200


class WeChatTemplateError(ConfigError):
    """The WeChat templates file is malformed; raised at start."""


@functools.lru_cache(maxsize=512)
def field_limit(name: str) -> int:
    """Most characters WeChat accepts in a field named ``name`` (``thing3`` → 20)."""
    match = _FIELD_TYPE.match(name)
    return FIELD_LIMITS.get(match.group(1) if match else name, LEGACY_LIMIT)


@functools.lru_cache(maxsize=512)
def _pieces(text: str) -> tuple[str, ...]:
    """``text`` split at its placeholders: literal, name, literal, name …, literal (parsed once
    per text, not once per message)."""
    return tuple(_PLACEHOLDER.split(text))


def _fill(text: str, params: Mapping[str, Any]) -> str:
    """``text`` with each ``${name}`` replaced by ``params[name]`` ("" when missing)."""
    pieces = _pieces(text)
    return "".join([piece if n % 2 == 0 else str(params.get(piece, "")) for n, piece in enumerate(pieces)])


def _shorten(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit - 1] + "…"


@dataclass(frozen=True)
class WeChatTemplate:
    """One kind's template (id, optional link, fields' texts) and customer-service text."""

    kind: str
    template_id: str
    fields: Mapping[str, str]
    url: str = ""
    text: str = ""

    @property
    def params(self) -> set[str]:
        """The parameters its fields use."""
        return {p for text in self.fields.values() for p in _PLACEHOLDER.findall(text)}

    def data(self, params: Mapping[str, Any], shorten: bool = True) -> dict[str, dict[str, str]] | None:
        """The ``data`` of a send: every field filled from ``params``. Values too long for their
        field are shortened, or, with ``shorten=False``, the template does not fit (None)."""
        data = {}
        for name, text in self.fields.items():
            value = _fill(text, params).strip()
            limit = field_limit(name)
            if len(value) > limit and not shorten:
                return None
            data[name] = {"value": _shorten(value, limit)}
        return data

    def customer_service_text(self, params: Mapping[str, Any]) -> str:
        """The notice as a customer-service text ("" when the kind has none)."""
        return _fill(self.text, params).strip()


@dataclass(frozen=True)
class WeChatTemplates:
    """The templates of one deployment, by kind; only those with an id can be sent."""

    templates: Mapping[str, WeChatTemplate] = field(default_factory=dict)

    def get(self, kind: str) -> WeChatTemplate | None:
        """What is configured for ``kind`` (its ``template_id`` may be empty)."""
        return self.templates.get(kind)

    @classmethod
    def load(cls, path: Path | str, required: bool = True) -> "WeChatTemplates":
        """Read and validate the file (a missing file is empty unless ``required``)."""
        path = Path(path)
        if not path.exists() and not required:
            return cls()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise WeChatTemplateError(f"cannot read WeChat templates {path}: {exc}") from None
        entries = data.get("templates") if isinstance(data, dict) else None
        if not isinstance(entries or {}, dict):
            raise WeChatTemplateError(f"WeChat templates {path}: expected a 'templates:' mapping")
        return cls.from_dict(entries or {}, str(path))

    @classmethod
    def from_dict(cls, entries: Mapping[str, Any], source: str = "WeChat templates") -> "WeChatTemplates":
        """Build from the ``templates:`` mapping (kind → template_id, url, data)."""
        templates = {}
        for kind, entry in entries.items():
            fields = entry.get("data") if isinstance(entry, dict) else None
            if not isinstance(fields, dict) or not fields or not all(
                    isinstance(k, str) and _FIELD_NAME.fullmatch(k) and isinstance(v, str)
                    for k, v in fields.items()):
                raise WeChatTemplateError(
                    f"{source}: template {kind!r} needs data: a mapping of field name to text")
            template_id = str(entry.get("template_id") or "").strip()
            url = str(entry.get("url") or "").strip()
            if url and not url.startswith(("https://", "http://")):
                raise WeChatTemplateError(f"{source}: template {kind!r}: url must be http(s)")
            text = entry.get("text") or ""
            if not isinstance(text, str):
                raise WeChatTemplateError(f"{source}: template {kind!r}: text must be a string")
            templates[str(kind)] = WeChatTemplate(str(kind), template_id, dict(fields), url, text)
        reply = templates.get(REPLY_KIND)
        if reply is not None and reply.params != {REPLY_PARAM}:
            raise WeChatTemplateError(
                f"{source}: {REPLY_KIND} must use exactly one parameter, ${{{REPLY_PARAM}}}")
        return cls(templates)
