"""WeChat API error codes, classified by what the caller should do about them."""
from __future__ import annotations

# The access_token is invalid / not the latest (40001), malformed (40014) or expired (42001):
# refresh it once and retry.
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# System busy (-1) and frequency limits: retry with bounded backoff.
TRANSIENT_ERRORS = frozenset({-1, 45009, 45011, 45033})
# Outside the 48-hour customer-service window (45015), user not subscribed (43004), user
# refuses messages (48002), 45047 customer-service quota for this user reached: stop and record.
UNDELIVERABLE_ERRORS = frozenset({45015, 43004, 48002, 45047})
# Frequency limits and quotas (daily API quota 45009, minute quota 45011, customer-service quota
# for this user 45047): a broadcast backs off on them instead of retrying at once.
THROTTLE_ERRORS = frozenset({45009, 45011, 45047})
# Credentials or IP whitelist problems: nothing a retry can fix.
CONFIG_ERRORS = frozenset({40013, 40125, 40164, 41002, 41004, 89503})


class WeChatApiError(Exception):
    """An ``errcode`` other than 0 from the WeChat API (or a transport failure, errcode None)."""

    def __init__(self, errcode: int | None, errmsg: str, path: str = "") -> None:
        super().__init__(f"{path}: errcode={errcode} errmsg={errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path

    @property
    def is_token_error(self) -> bool:
        """The token must be refreshed."""
        return self.errcode in TOKEN_ERRORS

    @property
    def is_transient(self) -> bool:
        """A bounded retry may succeed (busy, throttled, network)."""
        return self.errcode is None or self.errcode in TRANSIENT_ERRORS

    @property
    def is_throttled(self) -> bool:
        """A frequency limit or quota: later, not now."""
        return self.errcode in THROTTLE_ERRORS

    @property
    def is_undeliverable(self) -> bool:
        """WeChat refuses to deliver to this user now; record it and stop."""
        return self.errcode in UNDELIVERABLE_ERRORS


class WeChatUnavailable(WeChatApiError):
    """Connection error, timeout, 5xx or an unparseable answer."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(None, message, path)
