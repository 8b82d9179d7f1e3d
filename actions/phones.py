"""Phone numbers as customers type them: 13812345678, １３８ １２３４ ５６７８, 138-1234-5678,
+86 138 1234 5678, 0086-13812345678, 025-88886666, 025 8888 6666."""
from __future__ import annotations

import re
from typing import Optional

from actions.text import normalize

_SEP = r"[\s\-]?"
_PHONE = re.compile(
    r"(?<!\d)(?:(?:\+|00)86" + _SEP + r")?"  # country code, dropped
    r"(1[3-9]\d(?:" + _SEP + r"\d{4}){2}"  # mobile: 3-4-4 digits
    r"|0\d{2,3}" + _SEP + r"\d{4}" + _SEP + r"\d{3,4})"  # landline: area code + 7-8 digits
    r"(?!\d)"
)


def find_phone(text: Optional[str]) -> Optional[str]:
    """The first mainland mobile or landline number in the text, digits only (separators and
    the +86 / 0086 prefix removed; full-width digits allowed), or None."""
    match = _PHONE.search(normalize(text))
    return re.sub(r"\D", "", match.group(1)) if match else None
