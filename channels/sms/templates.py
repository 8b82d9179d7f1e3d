"""Approved SMS templates and the rendering of assistant replies into templated SMS.

Chinese providers send only pre-approved templates, never free text. ``bot/sms_templates.yml``
maps each kind of reply (``bill_summary``, ``outage_notice``, ``ticket_receipt``,
``generic_reply`` …) to its template id at each provider, its variables in order and the approved
text (``${name}`` placeholders, used to count billed segments and for logs).

A reply turn becomes:
- one SMS per reply that names a mapped template (Rasa custom payload
  ``{"sms": {"kind": "bill_summary", "params": {...}}}``);
- the rest as text, buttons rendered as numbered options ("回复1 …"), sent through the
  ``generic_reply`` template (one content variable) split at its per-variable length limit,
  never inside a number, summarised (whole sentences dropped) beyond ``max_parts`` messages;
- when no ``generic_reply`` template is approved for the provider, the ``fallback`` template
  (pointing to the web chat, the WeChat account or 95598) instead, with a log line.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from channels.config_error import ConfigError
from channels.digits import ascii_int
from channels.sms.segments import segment_count

log = logging.getLogger("channels.sms.templates")

GENERIC = "generic_reply"
FALLBACK = "fallback"
OPTOUT_CONFIRM = "optout_confirm"
OPTIN_CONFIRM = "optin_confirm"
VERIFICATION_CODE = "verification_code"  # params code, minutes: pointless once expired
SUMMARY_SUFFIX = "详询95598"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
# Runs that must never be cut: numbers, amounts, dates, times, account and ticket ids, codes.
_ATOM = re.compile(r"[0-9A-Za-z][0-9A-Za-z.:/\-+%@_]*|.", re.S)
_BREAK_AFTER = set("。！？；，、,;!? ）)")
_SENTENCE = re.compile(r"[^。！？!?\n]*[。！？!?\n]|[^。！？!?\n]+")


class TemplateConfigError(ConfigError):
    """bot/sms_templates.yml is malformed; raised at start."""


@dataclass(frozen=True)
class SmsTemplate:
    """One approved template: its ids per provider, variables and approved text."""

    kind: str
    text: str
    params: tuple[str, ...] = ()
    ids: dict[str, str] = field(default_factory=dict)
    max_param_length: int = 35

    def id_for(self, provider: str) -> str | None:
        """The template id at ``provider``, None when not approved there."""
        return self.ids.get(provider) or None

    def render(self, values: dict[str, str]) -> str:
        """The SMS text the customer reads (without the 【signature】)."""
        return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "")), self.text)


@dataclass(frozen=True)
class OutgoingSms:
    """One templated SMS ready for the outbox."""

    kind: str
    template_id: str
    params: dict[str, str]
    text: str
    segments: int
    expires_in: float | None = None  # seconds after which it is given up rather than sent


class TemplateBook:
    """All templates of one deployment, loaded from YAML."""

    def __init__(self, templates: dict[str, SmsTemplate]) -> None:
        self.templates = templates

    @classmethod
    def load(cls, path: Path) -> "TemplateBook":
        """Read and validate the templates file."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TemplateConfigError(f"cannot read SMS templates {path}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("templates") or {}, dict):
            raise TemplateConfigError(f"SMS templates {path}: expected a 'templates:' mapping")
        return cls.from_dict(data.get("templates") or {})

    @classmethod
    def from_dict(cls, entries: dict[str, Any]) -> "TemplateBook":
        """Build from the ``templates:`` mapping of the YAML file."""
        templates = {}
        for kind, entry in entries.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise TemplateConfigError(f"SMS template {kind!r} needs a text")
            if not isinstance(entry.get("params") or [], list):
                raise TemplateConfigError(f"SMS template {kind!r}: params must be a list")
            params = tuple(str(p) for p in entry.get("params") or ())
            used = set(_PLACEHOLDER.findall(entry["text"]))
            if used != set(params):
                raise TemplateConfigError(
                    f"SMS template {kind!r}: params {sorted(params)} != text variables {sorted(used)}")
            ids = {p: str(entry[p]) for p in ("aliyun", "tencent") if entry.get(p)}
            max_length = entry.get("max_param_length") or 35
            if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
                raise TemplateConfigError(
                    f"SMS template {kind!r}: max_param_length must be a positive integer")
            templates[kind] = SmsTemplate(kind, entry["text"], params, ids, max_length)
        if GENERIC in templates and len(templates[GENERIC].params) != 1:
            raise TemplateConfigError("generic_reply must have exactly one content variable")
        return cls(templates)

    def get(self, kind: str, provider: str) -> SmsTemplate | None:
        """The template of ``kind`` if it is approved at ``provider``."""
        template = self.templates.get(kind)
        return template if template and template.id_for(provider) else None


def split_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, preferring punctuation, never
    inside a number or other alphanumeric run (unless the run alone exceeds ``limit``)."""
    atoms = _ATOM.findall(" ".join(text.split()))
    pieces: list[str] = []
    current = ""
    for atom in atoms:
        while len(atom) > limit:  # a single run longer than a variable: no way to keep it whole
            if current:
                pieces.append(current)
                current = ""
            pieces.append(atom[:limit])
            atom = atom[limit:]
        if len(current) + len(atom) <= limit:
            current += atom
            continue
        cut = max((i + 1 for i, ch in enumerate(current) if ch in _BREAK_AFTER), default=0)
        if cut >= limit // 2 and _safe_cut(current, cut):
            pieces.append(current[:cut])
            current = current[cut:] + atom
        else:
            pieces.append(current)
            current = atom
    if current.strip():
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def _safe_cut(text: str, cut: int) -> bool:
    return not (cut < len(text) and text[cut - 1].isalnum() and text[cut].isalnum())


def summarise(text: str, limit: int, max_parts: int) -> list[str]:
    """``text`` split for a ``limit``-long variable in at most ``max_parts`` pieces: whole
    sentences beyond the budget are dropped and replaced by a pointer to 95598."""
    pieces = split_text(text, limit)
    if len(pieces) <= max_parts:
        return pieces
    kept = ""
    for sentence in _SENTENCE.findall(text):
        candidate = kept + sentence
        if len(split_text(candidate + SUMMARY_SUFFIX, limit)) > max_parts:
            break
        kept = candidate
    if not kept.strip():  # the first sentence alone is too long: keep whole runs that fit
        budget = split_text(text, limit)[:max_parts]
        last = budget[-1]
        while last and len(last) + len(SUMMARY_SUFFIX) + 1 > limit:
            atoms = _ATOM.findall(last)
            last = "".join(atoms[:-1])
        budget[-1] = last + "…" + SUMMARY_SUFFIX
        return [p for p in budget if p]
    return split_text(kept.rstrip() + SUMMARY_SUFFIX, limit)


def _fit(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit - 1] + "…"


def options_text(titles: list[str]) -> str:
    """Buttons as numbered options: ``回复1 查询电费；回复2 …``."""
    return "；".join(f"回复{i} {title}" for i, title in enumerate(titles, 1))


class SmsRenderer:
    """Turns a reply turn into templated SMS for one provider."""

    def __init__(self, book: TemplateBook, provider: str, sign_name: str, max_parts: int = 3):
        self.book = book
        self.provider = provider
        self.sign_name = sign_name
        self.max_parts = max_parts

    def make(self, template: SmsTemplate, values: dict[str, Any]) -> OutgoingSms:
        """An SMS of ``template`` with ``values`` (strings, in the template's variable order);
        a value longer than the template's per-variable limit is shortened to fit (ending in
        "…"): the provider would refuse the whole SMS."""
        limit = template.max_param_length
        params = {name: _fit(str(values.get(name, "")), limit) for name in template.params}
        text = template.render(params)
        minutes = ascii_int(params.get("minutes")) if template.kind == VERIFICATION_CODE else None
        return OutgoingSms(template.kind, template.id_for(self.provider) or "", params, text,
                           segment_count(text, self.sign_name),
                           minutes * 60 if minutes else None)

    def of_kind(self, kind: str, values: dict[str, Any] | None = None) -> OutgoingSms | None:
        """The SMS of a mapped kind, or None (logged) when the kind is not approved here."""
        template = self.book.get(kind, self.provider)
        if template is None:
            log.warning("sms template %r not mapped for %s", kind, self.provider)
            return None
        return self.make(template, values or {})

    def render(self, replies: list[Any]) -> tuple[list[OutgoingSms], list[tuple[str, str]]]:
        """The SMS of one reply turn and the numbered options it offers ((title, payload) in
        order; empty when there are none)."""
        messages: list[OutgoingSms] = []
        texts: list[str] = []
        options: list[tuple[str, str]] = []
        for reply in replies:
            custom = getattr(reply, "custom", None) or {}
            spec = custom.get("sms") if isinstance(custom, dict) else None
            if isinstance(spec, dict) and spec.get("kind"):
                template = self.book.get(str(spec["kind"]), self.provider)
                values = spec.get("params") or {}
                if template and all(values.get(p) not in (None, "") for p in template.params):
                    messages.append(self.make(template, values))
                    continue
                log.warning("sms template %r not mapped or incomplete for %s; sent as text",
                            spec["kind"], self.provider)
            text = (getattr(reply, "text", None) or "").strip()
            if text:
                texts.append(text)
            # Numbered across every reply of the turn (channels.options remembers them all).
            options.extend((b.title, b.payload) for b in getattr(reply, "buttons", None) or ())
        body = "\n".join(texts)
        if options:
            body = (body + "\n" if body else "") + options_text([t for t, _ in options])
        if body:
            messages.extend(self.text_messages(body))
        return messages, options

    def text_messages(self, body: str) -> list[OutgoingSms]:
        """Free text through the generic template, or the fallback template when none."""
        generic = self.book.get(GENERIC, self.provider)
        if generic is None:
            fallback = self.book.get(FALLBACK, self.provider)
            log.warning("sms: no approved generic_reply template at %s; text reply replaced by "
                        "the fallback template (%d characters not sent)", self.provider, len(body))
            if fallback is None:
                log.error("sms: no approved fallback template at %s either; the answer is "
                          "not sent", self.provider)
                return []
            return [self.make(fallback, {})]
        (name,) = generic.params
        return [self.make(generic, {name: part})
                for part in summarise(body, generic.max_param_length, self.max_parts)]
