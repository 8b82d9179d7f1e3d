"""Mask 户号 and phone numbers in every log line of the process.

A log-record factory rather than a handler filter, so records from every logger are masked
whatever handlers a framework (Rasa SDK, aiohttp) configures later. The message, the traceback
of ``exc_info`` (exception texts often quote the request path or the value that failed) and
``stack_info`` are all masked.
"""
from __future__ import annotations

import logging

from integrations.masking import mask_text

_installed = False
_traceback_formatter = logging.Formatter()


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask ``record`` in place: its message, its traceback and its stack (returns it).

    The traceback is formatted here, masked into ``exc_text`` (which logging's formatters print
    as it is) and ``exc_info`` is dropped, so no handler can format the raw exception again."""
    try:
        record.msg, record.args = mask_text(record.getMessage()), ()
    except Exception:  # noqa: BLE001 - a broken format string is logging's problem to report
        pass
    if record.exc_info:
        record.exc_text = mask_text(_traceback_formatter.formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = mask_text(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)
    return record


def install_log_masking() -> None:
    """Make every log record pass through :func:`mask_record` (idempotent)."""
    global _installed
    if _installed:
        return
    make_record = logging.getLogRecordFactory()

    def masked_record(*args, **kwargs) -> logging.LogRecord:
        return mask_record(make_record(*args, **kwargs))

    logging.setLogRecordFactory(masked_record)
    _installed = True
