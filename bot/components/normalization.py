"""Text normalisation for Chinese customer messages, with an offset map.

Pure Python (no Rasa import) so both environments can use and test it. Customers type on
phone keyboards that produce full-width digits and letters (``３２０１２３４５６７``, ``Ａ０２３``),
paste text with zero-width or control characters, and mix ideographic and ASCII spaces. The
NLU pipeline, the regexes and the lookup tables all expect the plain half-width form, so the
first pipeline component rewrites the message text with :func:`normalize_text`.

Because some characters change length under NFKC (``…`` becomes ``...``, ``㎡`` becomes ``m2``)
and control characters are removed, the function also returns an offset map so entity
annotations of training examples can be moved onto the normalised text (:func:`remap_span`).
Chinese characters are left as they are (NFKC only folds the rare CJK compatibility
ideographs onto their unified form).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import List, Tuple

__all__ = ["NormalizedText", "normalize_text", "remap_span"]


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


def normalize_text(text: str) -> NormalizedText:
    """Normalise a customer message for the NLU pipeline.

    - NFKC: full-width digits, letters and punctuation become half-width (``３`` → ``3``,
      ``？`` → ``?``, ideographic space → space); Chinese characters are kept;
    - control and format characters are removed; tabs and newlines become spaces;
    - runs of whitespace collapse to one space; leading and trailing whitespace is removed.

    Returns the new text with an offset map (see :class:`NormalizedText`).
    """
    out: List[str] = []
    length = 0
    offsets: List[int] = [0] * (len(text) + 1)
    last_was_space = True  # drops leading whitespace
    for start, cluster in _clusters(text):
        offsets[start] = length
        if _is_removed(cluster[0]):
            piece = ""
        else:
            piece = unicodedata.normalize("NFKC", cluster)
        for extra in range(start + 1, start + len(cluster)):
            offsets[extra] = length
        kept: List[str] = []
        for char in piece:
            if char.isspace():
                if last_was_space:
                    continue
                kept.append(" ")
                last_was_space = True
            else:
                kept.append(char)
                last_was_space = False
        out.extend(kept)
        length += len(kept)
    offsets[len(text)] = length
    normalized = "".join(out)
    if normalized.endswith(" "):
        normalized = normalized[:-1]
        offsets = [min(offset, len(normalized)) for offset in offsets]
    return NormalizedText(original=text, text=normalized, offsets=tuple(offsets))


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
