"""Text normalisation shared by every action: what customers type, made comparable."""
from __future__ import annotations

import unicodedata
from typing import Optional


def normalize(text: Optional[str]) -> str:
    """NFKC (full-width digits, letters and spaces to ASCII) and trimmed; ``None`` → ``""``."""
    return unicodedata.normalize("NFKC", text or "").strip()
