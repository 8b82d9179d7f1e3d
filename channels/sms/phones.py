"""Mainland mobile numbers: normalisation to 11 digits and masking for logs."""
from __future__ import annotations

import re
import unicodedata

from integrations.masking import mask_phone

_MOBILE = re.compile(r"1[3-9][0-9]{9}")  # ASCII only: \d would also take other scripts' digits


def normalise_phone(raw: object) -> str | None:
    """The 11-digit mainland mobile number in ``raw``, or None.

    Accepts what providers and people write: ``+86 138-1234-5678``, ``008613812345678``,
    ``8613812345678``, full-width digits. Anything else (landlines, foreign numbers, digits of
    other scripts) is None.
    """
    if raw is None:
        return None
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    digits = re.sub(r"[\s\-()]", "", text)
    if digits.startswith("+"):
        digits = digits[1:]
        if not digits.startswith("86"):
            return None
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits if _MOBILE.fullmatch(digits) else None


def mask(phone: str) -> str:
    """The phone number masked to its last 4 digits, for logs."""
    return mask_phone(phone)
