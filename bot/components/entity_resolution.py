"""Resolve duplicate and overlapping entities found by several extractors.

Pure Python (no Rasa import) so it can be tested in either environment. DIET and the regex
extractor (regexes + lookup tables) run side by side; both often find the same 户号, and DIET
sometimes finds a shorter or longer piece of what a lookup table found. :func:`resolve_entities`
keeps one entity per span and type:

- for each entity type there is an order of preferred extractors (the regex extractor first for
  the types whose format a regex defines exactly: account_number, phone, ticket_number,
  application_number; DIET first for the others);
- of entities of a strict type whose spans overlap, the one whose extractor is preferred wins,
  then the longer span, then the earlier one;
- of entities of another type (area, hall, month, business_type) whose spans overlap, the longer
  span wins, then the preferred extractor (DIET): a lookup table holds complete names
  ("横溪街道"), and DIET's typical mistake is a piece of one ("街道"), while a longer DIET span
  ("江宁区东山街道" around the lookup's "东山街道") is the more specific place;
- an entity of a *strict* type (format defined by a regex) that the regex extractor found also
  wins against overlapping entities of other types from other extractors: a 10-digit run the
  account_number regex matched is not a phone number, whatever DIET guessed.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "DEFAULT_REGEX_EXTRACTOR",
    "DEFAULT_STRICT_TYPES",
    "resolve_entities",
]

Entity = Dict[str, Any]

DEFAULT_REGEX_EXTRACTOR = "RegexEntityExtractor"
DEFAULT_MODEL_EXTRACTOR = "DIETClassifier"
DEFAULT_STRICT_TYPES: Tuple[str, ...] = (
    "account_number",
    "phone",
    "ticket_number",
    "application_number",
)


def _span(entity: Mapping[str, Any]) -> Optional[Tuple[int, int]]:
    start, end = entity.get("start"), entity.get("end")
    if isinstance(start, int) and isinstance(end, int):
        return start, end
    return None


def _overlaps(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _preference(
    entity: Mapping[str, Any],
    strict_types: Iterable[str],
    regex_extractor: str,
    model_extractor: str,
) -> int:
    """0 for the preferred extractor of this entity's type, 1 for the other, 2 for anything else."""
    if entity.get("entity") in strict_types:
        order = (regex_extractor, model_extractor)
    else:
        order = (model_extractor, regex_extractor)
    extractor = entity.get("extractor")
    return order.index(extractor) if extractor in order else len(order)


def resolve_entities(
    entities: Sequence[Mapping[str, Any]],
    strict_types: Sequence[str] = DEFAULT_STRICT_TYPES,
    regex_extractor: str = DEFAULT_REGEX_EXTRACTOR,
    model_extractor: str = DEFAULT_MODEL_EXTRACTOR,
    uppercase_types: Sequence[str] = (),
    compact_types: Sequence[str] = (),
) -> List[Entity]:
    """Return ``entities`` without duplicates and overlaps, ordered by start offset.

    Args:
        entities: entity dicts as Rasa produces them (``entity``, ``start``, ``end``, ``value``,
            ``extractor`` ...). Entities without offsets are deduplicated by type and value only.
        strict_types: types whose format a regex defines; the regex extractor is preferred for them.
        regex_extractor: name of the regex/lookup extractor.
        model_extractor: name of the trained extractor.
        uppercase_types: types whose value is upper-cased (``a023`` → ``A023``).
        compact_types: types whose value loses spaces and hyphens (``138 1234-5678`` →
            ``13812345678``); offsets still point at the text as typed.

    Returns:
        New entity dicts (the inputs are not modified).
    """
    strict = set(strict_types)
    upper = set(uppercase_types)
    compact = set(compact_types)

    def rank(item: Tuple[int, Mapping[str, Any]]) -> Tuple[int, ...]:
        index, entity = item
        span = _span(entity) or (0, 0)
        is_strict = entity.get("entity") in strict
        validated = is_strict and entity.get("extractor") == regex_extractor
        preference = _preference(entity, strict, regex_extractor, model_extractor)
        return (
            0 if validated else 1,
            preference if is_strict else 0,
            -(span[1] - span[0]),
            preference,
            span[0],
            index,
        )

    kept: List[Tuple[int, Entity]] = []
    seen_without_span = set()
    for index, entity in sorted(enumerate(entities), key=rank):
        entity_type = entity.get("entity")
        span = _span(entity)
        if span is None:
            key = (entity_type, str(entity.get("value")))
            if key in seen_without_span:
                continue
            seen_without_span.add(key)
            kept.append((index, dict(entity)))
            continue
        if any(_conflicts(entity, span, other, strict, regex_extractor) for _, other in kept):
            continue
        kept.append((index, dict(entity)))

    kept.sort(key=lambda item: (_span(item[1]) or (-1, -1), item[0]))
    result = [entity for _, entity in kept]
    for entity in result:
        value = entity.get("value")
        if not isinstance(value, str):
            continue
        if entity.get("entity") in compact:
            value = value.replace(" ", "").replace("-", "")
        if entity.get("entity") in upper:
            value = value.upper()
        entity["value"] = value
    return result


def _conflicts(
    candidate: Mapping[str, Any],
    span: Tuple[int, int],
    accepted: Mapping[str, Any],
    strict: set,
    regex_extractor: str,
) -> bool:
    """Whether ``candidate`` must give way to the already accepted entity."""
    other_span = _span(accepted)
    if other_span is None or not _overlaps(span, other_span):
        return False
    if candidate.get("entity") == accepted.get("entity"):
        return True
    # Across types, only a regex-validated strict entity overrides (a 户号 is not a phone).
    return (
        accepted.get("entity") in strict
        and accepted.get("extractor") == regex_extractor
        and candidate.get("extractor") != regex_extractor
    )
