"""What PowerDesk remembers about a conversation, in Redis.

* Binding: the 户号 a conversation has proved it owns (``pd:binding:<conversation>``). Only a
  verified account is ever bound; every account reply is gated on it.
* Verification failures: wrong phone last-4 answers are counted per conversation; the
  ``MAX_FAILED_VERIFICATIONS``-th failure locks binding for ``LOCK_SECONDS``. The counter itself
  expires ``LOCK_SECONDS`` after the last failure, so a slow trickle of guesses cannot
  accumulate forever but a burst always locks. A web conversation id costs nothing to make, so
  failures are also counted per 户号 across all conversations: ``ACCOUNT_MAX_FAILED_VERIFICATIONS``
  wrong answers for one account lock that account's verification for ``LOCK_SECONDS`` (4 digits
  are 10,000 guesses; this keeps guessing them to years).
* Reminder subscriptions: forward index per conversation (set of ``<account>|<kind>``) and a
  reverse index per account and kind (set of conversation ids) for the broadcast workers.
* Hand-off requests: appended to the Redis stream ``pd:handoff:requests``.

Works with redis-py 4.6 and 8.x (``redis.asyncio``), with or without ``decode_responses``.
The verification keys of one conversation share a hash tag so the Lua script stays on one slot.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable, Optional

PREFIX = "pd:"
MAX_FAILED_VERIFICATIONS = 5
ACCOUNT_MAX_FAILED_VERIFICATIONS = 10
LOCK_SECONDS = 30 * 60
REMINDER_KINDS: tuple[str, ...] = ("bill_due", "outage")
HANDOFF_STREAM = PREFIX + "handoff:requests"
HANDOFF_STREAM_MAXLEN = 100_000

# KEYS[1] failure counter, KEYS[2] lock; ARGV[1] max failures, ARGV[2] lock/window seconds.
# Returns the attempts left (0 = locked now). Atomic, so concurrent wrong answers cannot
# slip past the limit.
_RECORD_FAILURE_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
local left = tonumber(ARGV[1]) - n
if left <= 0 then
  redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[2]))
  redis.call('DEL', KEYS[1])
  return 0
end
return left
"""


class CustomerStoreError(ValueError):
    """A caller passed a value the store refuses (empty id, unknown reminder kind)."""


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _check_id(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CustomerStoreError(f"{name} must be a non-empty string")
    return value


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    result = tuple(dict.fromkeys(kinds))
    unknown = [k for k in result if k not in REMINDER_KINDS]
    if unknown or not result:
        raise CustomerStoreError(
            f"reminder kinds must be a non-empty subset of {REMINDER_KINDS}, got {result!r}"
        )
    return result


class CustomerStore:
    """Bindings, verification lock-out, reminder subscriptions and hand-off requests."""

    def __init__(self, redis) -> None:
        """``redis`` is a ``redis.asyncio.Redis`` (or cluster) client; the store never closes it."""
        self._redis = redis

    # ---- keys ------------------------------------------------------------------------------

    @staticmethod
    def _binding_key(conversation_id: str) -> str:
        return f"{PREFIX}binding:{conversation_id}"

    @staticmethod
    def _fail_key(conversation_id: str) -> str:
        return f"{PREFIX}verify:{{{conversation_id}}}:failures"

    @staticmethod
    def _lock_key(conversation_id: str) -> str:
        return f"{PREFIX}verify:{{{conversation_id}}}:lock"

    @staticmethod
    def _account_fail_key(account_number: str) -> str:
        return f"{PREFIX}verify:account:{{{account_number}}}:failures"

    @staticmethod
    def _account_lock_key(account_number: str) -> str:
        return f"{PREFIX}verify:account:{{{account_number}}}:lock"

    @staticmethod
    def _subs_key(conversation_id: str) -> str:
        return f"{PREFIX}reminders:conversation:{conversation_id}"

    @staticmethod
    def _subscribers_key(account_number: str, kind: str) -> str:
        return f"{PREFIX}reminders:account:{account_number}:{kind}"

    # ---- binding ---------------------------------------------------------------------------

    async def get_binding(self, conversation_id: str) -> Optional[str]:
        """The verified 户号 bound to the conversation, or None."""
        value = await self._redis.get(self._binding_key(_check_id("conversation_id", conversation_id)))
        return _text(value) if value is not None else None

    async def bind(self, conversation_id: str, account_number: str) -> None:
        """Bind a verified 户号 to the conversation (replaces any previous binding).

        Call only after the backend verified the customer's phone last-4 for this account.
        """
        _check_id("conversation_id", conversation_id)
        _check_id("account_number", account_number)
        await self._redis.set(self._binding_key(conversation_id), account_number)

    async def unbind(self, conversation_id: str) -> Optional[str]:
        """Remove the conversation's binding; returns the 户号 that was bound, if any.

        Reminder subscriptions of the old account are dropped too: a conversation that no
        longer proves ownership must not keep receiving that account's notices.
        """
        key = self._binding_key(_check_id("conversation_id", conversation_id))
        previous = await self._redis.get(key)
        await self._redis.delete(key)
        if previous is None:
            return None
        account = _text(previous)
        await self.unsubscribe_reminder(conversation_id, account_number=account)
        return account

    # ---- verification lock-out -------------------------------------------------------------

    async def _lock_left(self, key: str) -> int:
        ttl = int(await self._redis.ttl(key))
        if ttl == -1:  # a lock without expiry should never exist; treat it as a full lock
            return LOCK_SECONDS
        return max(ttl, 0)

    async def verification_locked(self, conversation_id: str) -> int:
        """Seconds left of the conversation's verification lock (0 = not locked)."""
        return await self._lock_left(self._lock_key(_check_id("conversation_id", conversation_id)))

    async def record_failed_verification(self, conversation_id: str) -> int:
        """Count a failed verification; returns attempts left (0 = now locked for 30 min)."""
        _check_id("conversation_id", conversation_id)
        left = await self._redis.eval(
            _RECORD_FAILURE_LUA,
            2,
            self._fail_key(conversation_id),
            self._lock_key(conversation_id),
            MAX_FAILED_VERIFICATIONS,
            LOCK_SECONDS,
        )
        return int(left)

    async def account_verification_locked(self, account_number: str) -> int:
        """Seconds left of the 户号's verification lock, whoever tries (0 = not locked)."""
        return await self._lock_left(
            self._account_lock_key(_check_id("account_number", account_number)))

    async def record_failed_account_verification(self, account_number: str) -> int:
        """Count a wrong answer for the 户号 from any conversation; returns attempts left for
        that account (0 = its verification is now locked for 30 min)."""
        _check_id("account_number", account_number)
        left = await self._redis.eval(
            _RECORD_FAILURE_LUA,
            2,
            self._account_fail_key(account_number),
            self._account_lock_key(account_number),
            ACCOUNT_MAX_FAILED_VERIFICATIONS,
            LOCK_SECONDS,
        )
        return int(left)

    async def failed_verifications(self, conversation_id: str) -> int:
        """Failures counted so far in the current window (0 after a lock or a success)."""
        value = await self._redis.get(self._fail_key(_check_id("conversation_id", conversation_id)))
        return int(_text(value)) if value is not None else 0

    async def clear_failed_verifications(self, conversation_id: str) -> None:
        """Forget the failure count (after a successful verification). A lock stays in force."""
        await self._redis.delete(self._fail_key(_check_id("conversation_id", conversation_id)))

    # ---- reminder subscriptions ------------------------------------------------------------

    async def subscribe_reminder(
        self,
        conversation_id: str,
        account_number: str,
        kinds: Iterable[str] = REMINDER_KINDS,
    ) -> set[str]:
        """Subscribe the conversation to reminders of ``kinds`` for the account.

        Idempotent; returns the kinds now subscribed for that account.
        """
        _check_id("conversation_id", conversation_id)
        _check_id("account_number", account_number)
        kinds = _check_kinds(kinds)
        pipe = self._redis.pipeline(transaction=True)
        for kind in kinds:
            pipe.sadd(self._subs_key(conversation_id), f"{account_number}|{kind}")
            pipe.sadd(self._subscribers_key(account_number, kind), conversation_id)
        await pipe.execute()
        return (await self.subscriptions_of(conversation_id)).get(account_number, set())

    async def unsubscribe_reminder(
        self,
        conversation_id: str,
        account_number: Optional[str] = None,
        kinds: Optional[Iterable[str]] = None,
    ) -> dict[str, set[str]]:
        """Remove subscriptions: all, one account's, or only some kinds.

        Returns what was removed, as ``{account: {kind, ...}}`` (empty when nothing matched).
        """
        _check_id("conversation_id", conversation_id)
        wanted_kinds = _check_kinds(kinds) if kinds is not None else None
        removed: dict[str, set[str]] = {}
        for account, subscribed in (await self.subscriptions_of(conversation_id)).items():
            if account_number is not None and account != account_number:
                continue
            for kind in subscribed:
                if wanted_kinds is None or kind in wanted_kinds:
                    removed.setdefault(account, set()).add(kind)
        if not removed:
            return removed
        pipe = self._redis.pipeline(transaction=True)
        for account, account_kinds in removed.items():
            for kind in account_kinds:
                pipe.srem(self._subs_key(conversation_id), f"{account}|{kind}")
                pipe.srem(self._subscribers_key(account, kind), conversation_id)
        await pipe.execute()
        return removed

    async def subscriptions_of(self, conversation_id: str) -> dict[str, set[str]]:
        """The conversation's subscriptions as ``{account: {kind, ...}}``."""
        members = await self._redis.smembers(
            self._subs_key(_check_id("conversation_id", conversation_id))
        )
        result: dict[str, set[str]] = {}
        for member in members:
            account, _, kind = _text(member).rpartition("|")
            if account and kind in REMINDER_KINDS:
                result.setdefault(account, set()).add(kind)
        return result

    async def subscribers_of(self, account_number: str, kind: str) -> list[str]:
        """Conversation ids subscribed to ``kind`` reminders of the account, sorted."""
        _check_id("account_number", account_number)
        (kind,) = _check_kinds((kind,))
        members = await self._redis.smembers(self._subscribers_key(account_number, kind))
        return sorted(_text(m) for m in members)

    # ---- hand-off --------------------------------------------------------------------------

    async def record_human_request(self, conversation_id: str, reason: str) -> str:
        """Append a request for a human agent to ``pd:handoff:requests``; returns its stream id."""
        _check_id("conversation_id", conversation_id)
        fields = {
            "conversation_id": conversation_id,
            "reason": reason or "",
            "requested_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        entry_id = await self._redis.xadd(
            HANDOFF_STREAM, fields, maxlen=HANDOFF_STREAM_MAXLEN, approximate=True
        )
        return _text(entry_id)
