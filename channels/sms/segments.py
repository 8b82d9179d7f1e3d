"""How operators bill an SMS: 70 characters for one message, 67 per part when concatenated.

Every character counts as one, Chinese or not, and the 【signature】 the provider prepends is part
of the count (Aliyun and Tencent both document this rule).
"""
from __future__ import annotations

SINGLE_LIMIT = 70
PART_LIMIT = 67


def billed_length(text: str, sign_name: str) -> int:
    """Characters the operator counts: the text plus 【sign_name】."""
    return len(text) + (len(sign_name) + 2 if sign_name else 0)


def segment_count(text: str, sign_name: str) -> int:
    """Billed segments of ``text`` sent under ``sign_name`` (at least 1)."""
    length = billed_length(text, sign_name)
    if length <= SINGLE_LIMIT:
        return 1
    return -(-length // PART_LIMIT)
