"""What PowerDesk remembers about a conversation, in Redis.

* Binding: the 户号 a conversation has proved it owns (``pd:binding:<conversation>``). Only a
  verified account is ever bound; every account reply is gated on it. Binding another 户号
  drops the old account's reminder subscriptions, as unbinding does. Web conversations (ids
  anyone can mint; a shared or kiosk browser keeps its session) have a sliding idle expiry
  (``web_idle_seconds``) on their binding and subscriptions, renewed on every use; WeChat and
  SMS ids belong to one person and keep theirs until unbound or unsubscribed.
* Bound conversations of an account (``pd:bindings:account:<account>``, a set): the reverse
  index of the bindings, for the broadcasts' outage audience; kept by bind/unbind. A member
  whose binding expired (web, idle) or moved to another 户号 is dropped when read
  (:meth:`CustomerStore.bound_conversations_of`). Bindings made before the index existed are
  indexed once by :meth:`CustomerStore.ensure_binding_index` (one SCAN, then a marker key).
* Verification limits (:class:`VerificationLimits`): an attempt is *reserved* atomically before
  the backend is asked (:meth:`CustomerStore.reserve_attempt`) in each scope it touches (the
  conversation, the client address, the 户号, the whole service) and *refunded* on success, so
  concurrent sessions cannot evaluate more guesses than the limits allow. A scope whose count
  reaches its maximum is locked; a repeated lock of the same scope within a week lasts twice
  as long as the previous one, up to its cap.
* One-time codes (短信验证码): 6 digits, kept only as a salted hash for
  ``CODE_TTL_SECONDS``, single use, ``CODE_MAX_TRIES`` tries; sends are capped per 户号,
  conversation and address per hour. The SMS request goes to the ``pd:outbound:requests``
  stream, which the gateway consumes.
* Reminder subscriptions: forward index per conversation (set of ``<account>|<kind>``) and a
  reverse index per account and kind (set of conversation ids) for the broadcast workers;
  entries whose conversation expired are dropped from the reverse index when read.
* Hand-off requests: appended to the Redis stream ``pd:handoff:requests``.

Every key a web conversation creates has a TTL, so sessions that come and go leave nothing
behind. Works with redis-py 4.6 and 8.x (``redis.asyncio``), with or without
``decode_responses``. All verification-limit keys share the hash tag ``{verify}`` so each
multi-scope Lua script stays on one cluster slot.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

PREFIX = "pd:"
REMINDER_KINDS: tuple[str, ...] = ("bill_due", "outage")
HANDOFF_STREAM = PREFIX + "handoff:requests"
HANDOFF_STREAM_MAXLEN = 100_000
OUTBOUND_STREAM = PREFIX + "outbound:requests"
OUTBOUND_STREAM_MAXLEN = 100_000
CODE_DIGITS = 6
CODE_TTL_SECONDS = 5 * 60
CODE_MAX_TRIES = 3
STRIKE_MEMORY_SECONDS = 7 * 24 * 3600
WEB_PREFIX = "web:"
BINDING_INDEX_MARKER = PREFIX + "bindings:index:v1"

# Scopes of the verification limits.
CONVERSATION = "conversation"
ADDRESS = "address"
ACCOUNT = "account"
SERVICE = "service"
# Scopes of the one-time code send caps.
CODES_ACCOUNT = "codes-account"
CODES_CONVERSATION = "codes-conversation"
CODES_ADDRESS = "codes-address"


@dataclass(frozen=True)
class Limit:
    """At most ``max_count`` counted events per sliding ``window_seconds`` (each event renews
    the window); the one that reaches the maximum locks the scope for ``lock_seconds``,
    doubled for each earlier lock of that scope within a week, up to ``max_lock_seconds``."""

    max_count: int
    window_seconds: int
    lock_seconds: int
    max_lock_seconds: int

    def __post_init__(self) -> None:
        if min(self.max_count, self.window_seconds, self.lock_seconds) < 1 \
                or self.max_lock_seconds < self.lock_seconds:
            raise ValueError(f"invalid limit {self!r}")


def _hourly(max_count: int) -> Limit:
    return Limit(max_count, 3600, 3600, 3600)


@dataclass(frozen=True)
class VerificationLimits:
    """Every limit on verification, with the defaults documented in the README."""

    conversation: Limit = Limit(5, 1800, 1800, 24 * 3600)
    account: Limit = Limit(10, 1800, 1800, 24 * 3600)
    address: Limit = Limit(20, 3600, 1800, 24 * 3600)
    # Service-wide: no escalation, so an attacker cannot stop last-4 checks for long.
    service: Limit = Limit(200, 3600, 1800, 1800)
    codes_per_account: Limit = _hourly(5)
    codes_per_conversation: Limit = _hourly(3)
    codes_per_address: Limit = _hourly(10)
    web_idle_seconds: int = 30 * 24 * 3600

    def of(self, scope: str) -> Limit:
        return {
            CONVERSATION: self.conversation, ADDRESS: self.address, ACCOUNT: self.account,
            SERVICE: self.service, CODES_ACCOUNT: self.codes_per_account,
            CODES_CONVERSATION: self.codes_per_conversation,
            CODES_ADDRESS: self.codes_per_address,
        }[scope]


# For every scope i: KEYS[2i-1] its counter, KEYS[2i] its strikes (earlier locks);
# ARGV[1] strike memory (s), then per scope: max, window, lock, max lock.
# All scopes are checked first; one at its maximum refuses the attempt and nothing is counted.
# Otherwise every counter is incremented; one reaching its maximum locks its scope (the counter
# then lives for the lock's length). Returns {allowed, scope index refused or newly locked
# (0 = none), that lock's seconds left, attempts left in scope 1}.
_RESERVE_LUA = """
local n = #KEYS / 2
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local count = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  if count >= tonumber(ARGV[base]) then
    local ttl = redis.call('TTL', KEYS[2 * i - 1])
    if ttl < 0 then
      ttl = tonumber(ARGV[base + 2])
      redis.call('EXPIRE', KEYS[2 * i - 1], ttl)
    end
    return {0, i, ttl, 0}
  end
end
local locked, locked_for, left = 0, 0, 0
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local max, window = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
  local lock, max_lock = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local count = redis.call('INCR', KEYS[2 * i - 1])
  if count >= max then
    local seconds = lock
    if max_lock > lock then
      local strikes = redis.call('INCR', KEYS[2 * i])
      redis.call('EXPIRE', KEYS[2 * i], tonumber(ARGV[1]))
      seconds = math.floor(math.min(lock * 2 ^ math.min(strikes - 1, 30), max_lock))
    end
    redis.call('EXPIRE', KEYS[2 * i - 1], seconds)
    if locked == 0 then
      locked, locked_for = i, seconds
    end
  else
    redis.call('EXPIRE', KEYS[2 * i - 1], window)
  end
  if i == 1 then
    left = max - count
  end
end
return {1, locked, locked_for, left}
"""

# Same layout. Takes one reserved attempt back from every scope; a lock it caused is lifted
# (and its strike forgotten): a right answer must not lock anybody out.
_REFUND_LUA = """
local n = #KEYS / 2
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local max, window = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
  local lock, max_lock = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local count = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  if count > 0 then
    redis.call('DECR', KEYS[2 * i - 1])
    if count >= max then
      redis.call('EXPIRE', KEYS[2 * i - 1], window)
      if max_lock > lock and tonumber(redis.call('GET', KEYS[2 * i]) or '0') > 0 then
        redis.call('DECR', KEYS[2 * i])
      end
    end
  end
end
return n
"""

# KEYS[1] a counter, ARGV[1] its maximum: deleted unless it is a lock.
_CLEAR_LUA = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
end
return 1
"""

# KEYS[1] the code hash; ARGV[1] the digest that was checked. Deletes the code only if it is
# still the one checked, so two right answers at once bind only once.
_CONSUME_CODE_LUA = """
if redis.call('HGET', KEYS[1], 'digest') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS[1] the code hash; ARGV[1] the digest of the code that was tried against; ARGV[2] tries
# allowed. Counts a wrong try on that same code (never recreating an expired one); the last
# allowed try spends it. Returns the tries made, or -1 when the code is gone.
_WRONG_CODE_LUA = """
if redis.call('HGET', KEYS[1], 'digest') ~= ARGV[1] then
  return -1
end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
return tries
"""


# KEYS: none (the keys are derived from the accounts, so this runs on one Redis server only;
# a Redis Cluster takes the pipelined path). ARGV[1] the reminder kind, ARGV[2] "1" to add the
# conversations bound to each account, then the accounts. For each account, one string: its
# reachable conversation ids joined by NUL (subscribers still subscribed, bound conversations
# whose binding still names the account); stale index members are removed as they are found.
_REACHABLE_LUA = """
local kind, bound = ARGV[1], ARGV[2] == '1'
local out = {}
for i = 3, #ARGV do
  local account = ARGV[i]
  local found = {}
  local subscribers = 'pd:reminders:account:' .. account .. ':' .. kind
  for _, cid in ipairs(redis.call('SMEMBERS', subscribers)) do
    if redis.call('SISMEMBER', 'pd:reminders:conversation:' .. cid, account .. '|' .. kind) == 1 then
      found[cid] = true
    else
      redis.call('SREM', subscribers, cid)
    end
  end
  if bound then
    local index = 'pd:bindings:account:' .. account
    for _, cid in ipairs(redis.call('SMEMBERS', index)) do
      if redis.call('GET', 'pd:binding:' .. cid) == account then
        found[cid] = true
      else
        redis.call('SREM', index, cid)
      end
    end
  end
  local ids = {}
  for cid in pairs(found) do ids[#ids + 1] = cid end
  out[#out + 1] = table.concat(ids, '\\0')
end
return out
"""

@dataclass(frozen=True)
class Attempt:
    """The outcome of :meth:`CustomerStore.reserve_attempt`.

    ``allowed``: the attempt may be evaluated (and is counted until refunded). ``locked_scope``:
    the scope that refused it, or that this attempt locked (it still counts: if it fails, the
    lock stands); ``seconds_left`` of that lock; ``attempts_left`` in the first scope reserved.
    """

    allowed: bool
    locked_scope: Optional[str]
    seconds_left: int
    attempts_left: int
    scopes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CodeCheck:
    """Outcome of :meth:`CustomerStore.check_code`: ``verified``, ``wrong`` (``tries_left`` on
    this code; 0 = the code is spent) or ``missing`` (none sent, expired or already used)."""

    outcome: str
    tries_left: int = 0


class CustomerStoreError(ValueError):
    """A caller passed a value the store refuses (empty id, unknown reminder kind)."""


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _is_cluster(redis) -> bool:
    """A Redis Cluster client (scripts may only touch the keys of one slot there)."""
    return hasattr(redis, "get_nodes")


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
    """Bindings, verification limits and codes, reminder subscriptions and hand-off requests."""

    def __init__(self, redis, limits: VerificationLimits = VerificationLimits(),
                 clock: Callable[[], float] = time.time) -> None:
        """``redis`` is a ``redis.asyncio.Redis`` (or cluster) client; the store never closes it.
        ``clock`` gives epoch seconds (tests pin it to check code expiry)."""
        self._redis = redis
        self.limits = limits
        self._clock = clock
        self._reachable = None  # the page script, registered on first use

    # ---- keys ------------------------------------------------------------------------------

    @staticmethod
    def _binding_key(conversation_id: str) -> str:
        return f"{PREFIX}binding:{conversation_id}"

    @staticmethod
    def _account_bindings_key(account_number: str) -> str:
        return f"{PREFIX}bindings:account:{account_number}"

    @staticmethod
    def _limit_key(scope: str, subject: str) -> str:
        return f"{PREFIX}verify:{{verify}}:{scope}:{subject}"

    @staticmethod
    def _code_key(conversation_id: str) -> str:
        return f"{PREFIX}verify:code:{conversation_id}"

    @staticmethod
    def _subs_key(conversation_id: str) -> str:
        return f"{PREFIX}reminders:conversation:{conversation_id}"

    @staticmethod
    def _subscribers_key(account_number: str, kind: str) -> str:
        return f"{PREFIX}reminders:account:{account_number}:{kind}"

    # ---- binding ---------------------------------------------------------------------------

    def _idle_ttl(self, conversation_id: str) -> Optional[int]:
        """Seconds an idle conversation keeps its binding (None: until unbound)."""
        return self.limits.web_idle_seconds if conversation_id.startswith(WEB_PREFIX) else None

    async def get_binding(self, conversation_id: str) -> Optional[str]:
        """The verified 户号 bound to the conversation, or None. Renews a web conversation's
        idle expiry (binding and subscriptions): this is its use."""
        key = self._binding_key(_check_id("conversation_id", conversation_id))
        ttl = self._idle_ttl(conversation_id)
        if ttl is None:
            value = await self._redis.get(key)
        else:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(key)
            pipe.expire(key, ttl)
            pipe.expire(self._subs_key(conversation_id), ttl)
            value, _, _ = await pipe.execute()
        return _text(value) if value is not None else None

    async def bind(self, conversation_id: str, account_number: str) -> dict[str, set[str]]:
        """Bind a verified 户号 to the conversation (replaces any previous binding).

        Call only after the customer proved ownership of this account. Subscriptions of a
        previously bound other account are dropped (the conversation no longer proves it owns
        that account); returns them as ``{account: {kind, ...}}``.
        """
        _check_id("conversation_id", conversation_id)
        _check_id("account_number", account_number)
        key = self._binding_key(conversation_id)
        previous = await self._redis.get(key)
        await self._redis.set(key, account_number, ex=self._idle_ttl(conversation_id))
        # Indexed after the binding is written: see bound_conversations_of.
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(self._account_bindings_key(account_number), conversation_id)
        if previous is not None and _text(previous) != account_number:
            pipe.srem(self._account_bindings_key(_text(previous)), conversation_id)
        await pipe.execute()
        if previous is None or _text(previous) == account_number:
            return {}
        return await self.unsubscribe_reminder(conversation_id, account_number=_text(previous))

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
        await self._redis.srem(self._account_bindings_key(account), conversation_id)
        await self.unsubscribe_reminder(conversation_id, account_number=account)
        return account

    async def bound_conversations(self, account_number: str) -> list[str]:
        """The conversations bound to the account now, sorted (see :meth:`bound_conversations_of`)."""
        return (await self.bound_conversations_of([account_number]))[account_number]

    async def bound_conversations_of(self, account_numbers: Iterable[str]) -> dict[str, list[str]]:
        """``{account: sorted conversation ids bound to it}`` for many accounts in three round
        trips. Each member of the reverse index is checked against its binding with a plain GET
        (reading for a broadcast is not a use: a web binding's idle expiry is not renewed);
        members whose binding expired or moved are removed from the index, and re-added if a
        bind of this account slipped in between (bind writes the binding before the index)."""
        accounts = [_check_id("account_number", a) for a in dict.fromkeys(account_numbers)]
        if not accounts:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for account in accounts:
            pipe.smembers(self._account_bindings_key(account))
        candidates = [(account, cid) for account, members in zip(accounts, await pipe.execute())
                      for cid in sorted(_text(m) for m in members)]
        result: dict[str, list[str]] = {account: [] for account in accounts}
        if not candidates:
            return result
        pipe = self._redis.pipeline(transaction=False)
        for _, cid in candidates:
            pipe.get(self._binding_key(cid))
        stale = []
        for (account, cid), value in zip(candidates, await pipe.execute()):
            if value is not None and _text(value) == account:
                result[account].append(cid)
            else:
                stale.append((account, cid))
        if stale:
            pipe = self._redis.pipeline(transaction=False)
            for account, cid in stale:
                pipe.srem(self._account_bindings_key(account), cid)
                pipe.get(self._binding_key(cid))
            values = (await pipe.execute())[1::2]
            rebound = [(a, c) for (a, c), v in zip(stale, values) if v is not None and _text(v) == a]
            if rebound:
                pipe = self._redis.pipeline(transaction=False)
                for account, cid in rebound:
                    pipe.sadd(self._account_bindings_key(account), cid)
                    result[account].append(cid)
                await pipe.execute()
                for account in {a for a, _ in rebound}:
                    result[account].sort()
        return result

    async def ensure_binding_index(self, scan_count: int = 1000) -> int:
        """Index the bindings made before the reverse index existed, once per Redis: a SCAN of
        ``pd:binding:*`` when the marker ``pd:bindings:index:v1`` is absent, then the marker.
        Returns how many bindings were indexed (0 when the marker was there: one EXISTS).
        Concurrent first runs both scan (SADD is idempotent); an interrupted one runs again."""
        if await self._redis.exists(BINDING_INDEX_MARKER):
            return 0
        indexed, batch = 0, []

        async def flush() -> int:
            pipe = self._redis.pipeline(transaction=False)
            for key in batch:
                pipe.get(key)
            values = await pipe.execute()
            pipe = self._redis.pipeline(transaction=False)
            count = 0
            for key, value in zip(batch, values):
                if value is not None:
                    pipe.sadd(self._account_bindings_key(_text(value)), key[len(PREFIX + "binding:"):])
                    count += 1
            await pipe.execute()
            batch.clear()
            return count

        async for key in self._redis.scan_iter(match=f"{PREFIX}binding:*", count=scan_count):
            batch.append(_text(key))
            if len(batch) >= scan_count:
                indexed += await flush()
        if batch:
            indexed += await flush()
        await self._redis.set(BINDING_INDEX_MARKER, str(int(self._clock())))
        return indexed

    # ---- verification limits ---------------------------------------------------------------

    def _scope_args(self, scopes: tuple[tuple[str, str], ...]) -> tuple[list[str], list[int]]:
        keys: list[str] = []
        args: list[int] = [STRIKE_MEMORY_SECONDS]
        for scope, subject in scopes:
            limit = self.limits.of(scope)
            key = self._limit_key(scope, _check_id(scope, subject))
            keys += [key, key + ":strikes"]
            args += [limit.max_count, limit.window_seconds, limit.lock_seconds,
                     limit.max_lock_seconds]
        return keys, args

    async def reserve_attempt(self, scopes: Iterable[tuple[str, str]]) -> Attempt:
        """Reserve one attempt in every ``(scope, subject)`` at once, e.g.
        ``[(CONVERSATION, conv), (ADDRESS, ip), (ACCOUNT, 户号), (SERVICE, "all")]``.

        Refused (nothing counted) when any scope is locked; otherwise counted in all of them
        until :meth:`refund_attempt`. Reserve before asking the backend, refund on success.
        """
        scopes = tuple(scopes)
        keys, args = self._scope_args(scopes)
        allowed, index, seconds, left = await self._redis.eval(
            _RESERVE_LUA, len(keys), *keys, *args)
        scope = scopes[int(index) - 1][0] if int(index) else None
        return Attempt(bool(int(allowed)), scope, int(seconds), int(left), scopes)

    async def refund_attempt(self, attempt: Attempt) -> None:
        """Take back an allowed attempt (it succeeded, or could not be evaluated)."""
        if not attempt.allowed:
            return
        keys, args = self._scope_args(attempt.scopes)
        await self._redis.eval(_REFUND_LUA, len(keys), *keys, *args)

    async def locked_scope(self, scopes: Iterable[tuple[str, str]]) -> Optional[tuple[str, int]]:
        """The first of ``scopes`` that is locked now and its seconds left, or None."""
        scopes = tuple(scopes)
        pipe = self._redis.pipeline(transaction=False)
        for scope, subject in scopes:
            key = self._limit_key(scope, _check_id(scope, subject))
            pipe.get(key)
            pipe.ttl(key)
        values = await pipe.execute()
        for (scope, _), count, ttl in zip(scopes, values[::2], values[1::2]):
            limit = self.limits.of(scope)
            if count is not None and int(_text(count)) >= limit.max_count:
                return scope, int(ttl) if int(ttl) > 0 else limit.lock_seconds
        return None

    async def attempts_counted(self, scope: str, subject: str) -> int:
        """Attempts counted now in one scope (reserved and not refunded)."""
        value = await self._redis.get(self._limit_key(scope, _check_id(scope, subject)))
        return int(_text(value)) if value is not None else 0

    async def clear_attempts(self, scope: str, subject: str) -> None:
        """Forget one scope's count (after a successful verification). A lock stays in force,
        and so does the memory of earlier locks (escalation)."""
        key = self._limit_key(scope, _check_id(scope, subject))
        await self._redis.eval(_CLEAR_LUA, 1, key, self.limits.of(scope).max_count)

    # ---- one-time codes --------------------------------------------------------------------

    @staticmethod
    def _digest(salt: str, code: str) -> str:
        return hashlib.sha256(f"{salt}:{code}".encode("utf-8")).hexdigest()

    async def issue_code(self, conversation_id: str, account_number: str, mobile: str,
                         client_address: Optional[str] = None) -> Attempt:
        """Make a one-time code for verifying ``account_number`` in the conversation and ask
        the gateway (stream ``pd:outbound:requests``) to text it to ``mobile``.

        Refused when a send cap (per 户号, conversation, address per hour) is reached: the
        returned attempt is then not allowed. A new code replaces the conversation's earlier
        one. Only a salted hash of the code is stored, for ``CODE_TTL_SECONDS``.
        """
        _check_id("conversation_id", conversation_id)
        _check_id("account_number", account_number)
        if not (isinstance(mobile, str) and len(mobile) == 11 and mobile.isdigit()):
            raise CustomerStoreError("mobile must be 11 digits")
        scopes = [(CODES_ACCOUNT, account_number), (CODES_CONVERSATION, conversation_id)]
        if client_address:
            scopes.append((CODES_ADDRESS, client_address))
        attempt = await self.reserve_attempt(scopes)
        if not attempt.allowed:
            return attempt
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        salt = secrets.token_hex(8)
        key = self._code_key(conversation_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping={"account": account_number, "salt": salt,
                                "digest": self._digest(salt, code),
                                "issued_at": str(int(self._clock())), "tries": "0"})
        pipe.expire(key, CODE_TTL_SECONDS)
        await pipe.execute()
        await self._redis.xadd(OUTBOUND_STREAM, {
            "conversation_id": f"sms:{mobile}",
            "purpose": "notice",
            "kind": "verification_code",
            "params": json.dumps({"code": code, "minutes": str(CODE_TTL_SECONDS // 60)}),
            "urgent": "1",
            "requested_by": conversation_id,
        }, maxlen=OUTBOUND_STREAM_MAXLEN, approximate=True)
        return attempt

    async def check_code(self, conversation_id: str, account_number: str, code: str) -> CodeCheck:
        """Check a code typed in the conversation for ``account_number``: single use, compared
        in constant time, expired after ``CODE_TTL_SECONDS`` (by the store's clock as well as
        the key's TTL), spent after ``CODE_MAX_TRIES`` wrong tries."""
        key = self._code_key(_check_id("conversation_id", conversation_id))
        stored = {_text(k): _text(v) for k, v in (await self._redis.hgetall(key)).items()}
        if (not stored or stored.get("account") != account_number
                or self._clock() - int(stored.get("issued_at", "0")) > CODE_TTL_SECONDS):
            return CodeCheck("missing")
        digest = self._digest(stored["salt"], str(code))
        if hmac.compare_digest(digest, stored["digest"]):
            consumed = await self._redis.eval(_CONSUME_CODE_LUA, 1, key, digest)
            return CodeCheck("verified" if int(consumed) else "missing")
        tries = int(await self._redis.eval(_WRONG_CODE_LUA, 1, key, stored["digest"],
                                           CODE_MAX_TRIES))
        return CodeCheck("wrong", max(CODE_MAX_TRIES - tries, 0) if tries >= 0 else 0)

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
        # The keys lie on different Cluster slots (no MULTI): the account's index first, then
        # the conversation's set; a failure in between leaves index members that the readers
        # prune (subscribers_of_many), never a subscription missing from the index.
        pipe = self._redis.pipeline(transaction=False)
        for kind in kinds:
            pipe.sadd(self._subscribers_key(account_number, kind), conversation_id)
        await pipe.execute()
        pipe = self._redis.pipeline(transaction=False)
        for kind in kinds:
            pipe.sadd(self._subs_key(conversation_id), f"{account_number}|{kind}")
        ttl = self._idle_ttl(conversation_id)
        if ttl is not None:
            pipe.expire(self._subs_key(conversation_id), ttl)
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
        # As in subscribe_reminder, in the order that leaves only prunable index members.
        await self._redis.srem(self._subs_key(conversation_id),
                               *(f"{account}|{kind}" for account, ks in removed.items() for kind in ks))
        pipe = self._redis.pipeline(transaction=False)
        for account, account_kinds in removed.items():
            for kind in account_kinds:
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
        """Conversation ids subscribed to ``kind`` reminders of the account, sorted.

        A web conversation whose subscriptions expired (idle) is dropped from the index here.
        """
        return (await self.subscribers_of_many([account_number], kind))[account_number]

    async def subscribers_of_many(self, account_numbers: Iterable[str], kind: str) -> dict[str, list[str]]:
        """:meth:`subscribers_of` for many accounts, in two or three round trips."""
        accounts = [_check_id("account_number", a) for a in dict.fromkeys(account_numbers)]
        (kind,) = _check_kinds((kind,))
        if not accounts:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for account in accounts:
            pipe.smembers(self._subscribers_key(account, kind))
        candidates = [(account, conv) for account, members in zip(accounts, await pipe.execute())
                      for conv in sorted(_text(m) for m in members)]
        result: dict[str, list[str]] = {account: [] for account in accounts}
        if not candidates:
            return result
        pipe = self._redis.pipeline(transaction=False)
        for account, conv in candidates:
            pipe.sismember(self._subs_key(conv), f"{account}|{kind}")
        expired: dict[str, list[str]] = {}
        for (account, conv), here in zip(candidates, await pipe.execute()):
            if here:
                result[account].append(conv)
            else:
                expired.setdefault(account, []).append(conv)
        if expired:
            pipe = self._redis.pipeline(transaction=False)
            for account, convs in expired.items():
                pipe.srem(self._subscribers_key(account, kind), *convs)
            await pipe.execute()
        return result

    async def reachable_of_many(self, account_numbers: Iterable[str], kind: str,
                                bound: bool = False) -> dict[str, list[str]]:
        """``{account: sorted conversation ids}``: the ``kind`` subscribers of each account
        (:meth:`subscribers_of_many`) and, with ``bound``, the conversations bound to it
        (:meth:`bound_conversations_of`), with the same pruning of stale index members. On one
        Redis server a page of accounts is one Lua call (a broadcast reads 100,000 accounts);
        on a Redis Cluster (keys of many slots) the pipelined reads of those two methods."""
        accounts = [_check_id("account_number", a) for a in dict.fromkeys(account_numbers)]
        (kind,) = _check_kinds((kind,))
        if not accounts:
            return {}
        if _is_cluster(self._redis):
            result = await self.subscribers_of_many(accounts, kind)
            if bound:
                for account, cids in (await self.bound_conversations_of(accounts)).items():
                    result[account] = sorted(set(result[account]) | set(cids))
            return result
        if self._reachable is None:
            self._reachable = self._redis.register_script(_REACHABLE_LUA)
        found = await self._reachable(keys=[], args=[kind, "1" if bound else "0", *accounts])
        return {account: sorted(_text(ids).split("\0")) if ids else []
                for account, ids in zip(accounts, found)}

    # ---- hand-off --------------------------------------------------------------------------

    async def record_human_request(self, conversation_id: str, reason: str,
                                   details: Optional[dict[str, str]] = None) -> str:
        """Append a request for a human agent to ``pd:handoff:requests``; returns its stream id.

        ``details`` adds string fields for the gateway's hand-off (``queue`` hint,
        ``customer_type``, ``account_masked``, ``channel``, ``trigger``: see
        :mod:`channels.handoff.requests`); the three base fields keep their meaning."""
        _check_id("conversation_id", conversation_id)
        fields = {
            **{str(k): str(v) for k, v in (details or {}).items() if v is not None},
            "conversation_id": conversation_id,
            "reason": reason or "",
            "requested_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        entry_id = await self._redis.xadd(
            HANDOFF_STREAM, fields, maxlen=HANDOFF_STREAM_MAXLEN, approximate=True
        )
        return _text(entry_id)
