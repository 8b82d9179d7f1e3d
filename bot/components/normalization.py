"""Text normalisation for Chinese customer messages, with an offset map.

Pure Python (no Rasa import) so both environments can use and test it. Customers type on
phone keyboards that produce full-width digits and letters (``３２０１２３４５６７``, ``Ａ０２３``),
paste text with zero-width or control characters, and mix ideographic and ASCII spaces. The
NLU pipeline, the regexes and the lookup tables all expect the plain half-width form, so the
first pipeline component rewrites the message text with :func:`normalize_text`, in steps:

1. NFKC per character; control and format characters removed;
2. markup tags (``<div>``, ``</p>``, ``<!-- -->``) removed, ``<script>``/``<style>`` with their content;
3. a 户号 (10 digits) or mobile number (11 digits, 1[3-9]...) typed in groups with spaces or
   dashes (``3201 234 567``, ``3201-234-567``) joined into one digit run;
4. Chinese numerals of months, dates, years and amounts to Arabic digits with ``cn2an``
   (``十一月`` → ``11月``, ``二零二六年`` → ``2026年``, ``一百块`` → ``100块``); other numerals
   (``查一下``, ``一个月``) are left alone;
5. a 户号 glued to the month after it (``32165432101月``) gets a space before the month, and a
   small reviewed table of homophone typos of the domain's words (``店费`` → ``电费``);
6. whitespace runs collapsed to one space, leading and trailing whitespace removed;
7. a message left without any letter, digit or Chinese character (``!!!``, ``###``, an emoji,
   markup only) becomes empty, so the NLU predicts nothing and the FallbackClassifier answers
   ``nlu_fallback``.

Steps that change lengths (``…`` → ``...``, ``十一`` → ``11``, removed tags and separators) are
recorded in an offset map, so entity annotations of training examples can be moved onto the
normalised text (:func:`remap_span`). Chinese characters are otherwise left as they are.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import cn2an

__all__ = ["HOMOPHONES", "NormalizedText", "normalize_text", "remap_span"]

# Typos of the domain's words from pinyin input (same sound, wrong character), wrong → right.
# Only forms that mean nothing else in a power-supply conversation; same length, so offsets stay.
HOMOPHONES: Dict[str, str] = {
    "店费": "电费",
    "电废": "电费",
    "停店": "停电",
    "停点": "停电",
    "欠废": "欠费",
    "跳扎": "跳闸",
    "护号": "户号",
    "营业亭": "营业厅",
    "交废": "交费",
    "缴废": "缴费",
    "跳匝": "跳闸",
    "投述": "投诉",
    "营业听": "营业厅",
    "营业庭": "营业厅",
    "转人公": "转人工",
}

# One replacement: text[start:end] becomes replacement.
Edit = Tuple[int, int, str]


@dataclass(frozen=True)
class NormalizedText:
    """The normalised text and where each original offset lands in it.

    ``offsets`` has ``len(original) + 1`` entries: ``offsets[i]`` is the index in ``text`` at which
    the output of original character ``i`` starts (or would start, for a removed character), and
    ``offsets[len(original)] == len(text)``. Offsets never decrease.
    """

    original: str
    text: str
    offsets: Tuple[int, ...]

    @property
    def changed(self) -> bool:
        """Whether normalisation changed the text at all."""
        return self.text != self.original

    @property
    def length_preserving(self) -> bool:
        """Whether every original offset maps to the same offset (spans need no remapping)."""
        return len(self.text) == len(self.original) and all(
            index == offset for index, offset in enumerate(self.offsets)
        )


def _apply(text: str, edits: Sequence[Edit]) -> NormalizedText:
    """Applies sorted, non-overlapping ``edits`` to ``text``, building the offset map.

    A replacement of the same length maps character for character; otherwise the characters of
    the replaced range map to the start of its replacement and the character after it to its end.
    """
    out: List[str] = []
    offsets: List[int] = []
    length = position = 0
    for start, end, replacement in edits:
        for _ in range(position, start):
            offsets.append(length)
            length += 1
        out.append(text[position:start])
        if len(replacement) == end - start:  # 店费 → 电费, 十一 → 11: character for character
            offsets.extend(range(length, length + len(replacement)))
        else:
            offsets.extend([length] * (end - start))
        out.append(replacement)
        length += len(replacement)
        position = end
    for _ in range(position, len(text)):
        offsets.append(length)
        length += 1
    out.append(text[position:])
    offsets.append(length)
    return NormalizedText(original=text, text="".join(out), offsets=tuple(offsets))


def _then(first: NormalizedText, second: NormalizedText) -> NormalizedText:
    """``second`` (a step applied to ``first.text``) expressed against ``first.original``."""
    return NormalizedText(
        original=first.original,
        text=second.text,
        offsets=tuple(second.offsets[offset] for offset in first.offsets),
    )


def _clusters(text: str) -> List[Tuple[int, str]]:
    """Split ``text`` into (start, cluster) pairs: a base character plus its combining marks.

    NFKC may compose a base with following combining marks (``e`` + U+0301 → ``é``), so those are
    normalised together; every other character is normalised on its own, which keeps the offset
    map exact.
    """
    clusters: List[Tuple[int, str]] = []
    for index, char in enumerate(text):
        if clusters and unicodedata.combining(char) and not _is_removed(clusters[-1][1][-1]):
            start, cluster = clusters[-1]
            clusters[-1] = (start, cluster + char)
        else:
            clusters.append((index, char))
    return clusters


def _is_removed(char: str) -> bool:
    """Control (Cc) characters that are not whitespace, and format (Cf) characters.

    Cf covers zero-width space/joiners, the BOM, soft hyphens and bidi marks: invisible, but they
    split digit runs (``320\u200b1234567``) and tokens.
    """
    category = unicodedata.category(char)
    if category == "Cc":
        return not char.isspace()
    return category == "Cf"


def _unicode_edits(text: str) -> List[Edit]:
    edits: List[Edit] = []
    for start, cluster in _clusters(text):
        piece = "" if _is_removed(cluster[0]) else unicodedata.normalize("NFKC", cluster)
        if piece != cluster:
            edits.append((start, start + len(cluster), piece))
    return edits


_TAG = re.compile(
    r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>",
    re.S | re.I,
)


def _markup_edits(text: str) -> List[Edit]:
    """Tags removed; a space kept where the tag separated two ASCII words (``a<br>b``)."""
    edits: List[Edit] = []
    for match in _TAG.finditer(text):
        before = text[match.start() - 1:match.start()]
        after = text[match.end():match.end() + 1]
        separates = before.isascii() and before.isalnum() and after.isascii() and after.isalnum()
        edits.append((match.start(), match.end(), " " if separates else ""))
    return edits


_DIGIT_GROUPS = re.compile(r"(?<![0-9A-Za-z+-])\d{2,6}(?:[ -]\d{2,6})+(?![0-9A-Za-z]|-\d)")
_MOBILE = re.compile(r"1[3-9]\d{9}")


def _digit_group_edits(text: str) -> List[Edit]:
    """Separators removed from a 户号 (10 digits) or mobile number typed in groups."""
    edits: List[Edit] = []
    for match in _DIGIT_GROUPS.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if len(digits) == 10 or _MOBILE.fullmatch(digits):
            edits.extend(
                (match.start() + sep.start(), match.start() + sep.end(), "")
                for sep in re.finditer(r"[ -]", match.group())
            )
    return edits


_CN_DIGITS = "零〇一二三四五六七八九"
_CN_NUMERAL = _CN_DIGITS + "两十百千万"
# Year: four digits read one by one (二零二六年). Month: 一..十二 before 月 (not 一个月, 上一月).
# Day: after a month, before 日/号. Amount: a numeral before a unit of money or energy; one
# character alone only before 块钱 (三元区 and 五角场 are places, 一块 is also "together").
_YEAR = re.compile(rf"(?<![{_CN_NUMERAL}])[{_CN_DIGITS}]{{4}}(?= ?年)")
_MONTH = re.compile(
    rf"(?<![{_CN_NUMERAL}几第每个这前本当])(?:十[一二]?|(?<![上下])一|[二三四五六七八九])(?=月)"
)
_DAY = re.compile(r"(?<=月)(?:[二三]?十[一二三四五六七八九]?|[一二三四五六七八九])(?=[日号])")
_AMOUNT = re.compile(
    rf"(?<![{_CN_NUMERAL}几第每])[{_CN_NUMERAL}](?:[{_CN_NUMERAL}点]*[{_CN_NUMERAL}])?"
    r"(?=多?(?:块钱|块|元|毛|角|度))"
)


_DIGIT_OF = str.maketrans("零〇一二三四五六七八九", "00123456789")


def _year_edits(text: str) -> List[Edit]:
    return [(m.start(), m.end(), m.group().translate(_DIGIT_OF)) for m in _YEAR.finditer(text)]


def _numeral_edits(pattern: re.Pattern, text: str) -> List[Edit]:
    edits: List[Edit] = []
    for match in pattern.finditer(text):
        numeral = match.group()
        if pattern is _AMOUNT and len(numeral) == 1 and not text.startswith("块钱", match.end()):
            continue  # 一块去 (together), 一度 (once), 三元区, 五角场: not amounts
        try:
            value = cn2an.cn2an(numeral, "smart")
        except ValueError:
            continue
        edits.append((match.start(), match.end(), str(value)))
    return edits


def _chinese_numeral_edits(text: str) -> List[Edit]:
    edits = _year_edits(text) + _numeral_edits(_MONTH, text) + _numeral_edits(_DAY, text)
    taken = [(start, end) for start, end, _ in edits]
    edits += [
        edit for edit in _numeral_edits(_AMOUNT, text)
        if not any(edit[0] < end and start < edit[1] for start, end in taken)
    ]
    return [_apart(text, edit) for edit in sorted(edits)]


def _apart(text: str, edit: Edit) -> Edit:
    """A space between new digits and digits already there (3205678901二零二六年 is a 户号 + a year)."""
    start, end, digits = edit
    before = " " if text[start - 1:start].isascii() and text[start - 1:start].isdigit() else ""
    after = " " if text[end:end + 1].isascii() and text[end:end + 1].isdigit() else ""
    return start, end, before + digits + after


# A 10-digit 户号 typed right before a month number ("32165432101月", "320777712310月").
_ACCOUNT_BEFORE_MONTH = re.compile(r"(?<![0-9A-Za-z])\d{10}(?=(?:1[0-2]|0?[1-9]) ?月)")


def _glued_month_edits(text: str) -> List[Edit]:
    """A space between a 户号 and the month glued to it, so each is its own token and entity."""
    return [(m.end(), m.end(), " ") for m in _ACCOUNT_BEFORE_MONTH.finditer(text)]


_HOMOPHONE = re.compile("|".join(sorted(map(re.escape, HOMOPHONES), key=len, reverse=True)))


def _homophone_edits(text: str) -> List[Edit]:
    return [(m.start(), m.end(), HOMOPHONES[m.group()]) for m in _HOMOPHONE.finditer(text)]


def _whitespace_edits(text: str) -> List[Edit]:
    edits: List[Edit] = []
    for match in re.finditer(r"\s+", text):
        edge = match.start() == 0 or match.end() == len(text)
        replacement = "" if edge else " "
        if match.group() != replacement:
            edits.append((match.start(), match.end(), replacement))
    return edits


def _contentless_edits(text: str) -> List[Edit]:
    """Everything, when no character is a letter, a digit or a Chinese character."""
    if any(unicodedata.category(char)[0] in "LN" for char in text):
        return []
    return [(0, len(text), "")] if text else []


_STEPS: Tuple[Callable[[str], List[Edit]], ...] = (
    _unicode_edits,
    _markup_edits,
    _digit_group_edits,
    _chinese_numeral_edits,
    _glued_month_edits,
    _homophone_edits,
    _whitespace_edits,
    _contentless_edits,
)


def normalize_text(text: str) -> NormalizedText:
    """Normalise a customer message for the NLU pipeline (the steps are in the module docstring).

    Returns the new text with an offset map (see :class:`NormalizedText`).
    """
    result = NormalizedText(original=text, text=text, offsets=tuple(range(len(text) + 1)))
    for step in _STEPS:
        edits = step(result.text)
        if edits:
            result = _then(result, _apply(result.text, edits))
    return result


def remap_span(normalized: NormalizedText, start: int, end: int) -> Tuple[int, int]:
    """Move the span ``[start, end)`` of the original text onto the normalised text.

    Whitespace that the normalisation dropped at either edge of the span is trimmed off the
    result, so the returned span never starts or ends with a space. An empty result
    (``start == end``) means the span consisted only of removed characters.
    """
    if not 0 <= start <= end <= len(normalized.original):
        raise ValueError(
            f"span [{start}, {end}) is outside a text of length {len(normalized.original)}"
        )
    new_start, new_end = normalized.offsets[start], normalized.offsets[end]
    text = normalized.text
    while new_start < new_end and text[new_start] == " ":
        new_start += 1
    while new_end > new_start and text[new_end - 1] == " ":
        new_end -= 1
    return new_start, new_end
