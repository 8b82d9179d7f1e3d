"""Mask 户号 and phone numbers in every log line of the process.

A log-record factory rather than a handler filter, so records from every logger are masked
whatever handlers a framework (Rasa SDK, aiohttp) configures later.
"""
from __future__ import annotations

import logging

from integrations.masking import mask_text

_installed = False


def install_log_masking() -> None:
    """Make every log record's message pass through :func:`mask_text` (idempotent)."""
    global _installed
    if _installed:
        return
    make_record = logging.getLogRecordFactory()

    def masked_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's problem to report
            return record
        record.msg, record.args = mask_text(message), ()
        return record

    logging.setLogRecordFactory(masked_record)
    _installed = True
