"""Audiences for the broadcast tests and benchmark: who they are, how they are seeded, what the
providers' fakes must have received.

An audience is N customers (户号) living in the affected area of one fault outage, each with a
kind: reachable on WeChat only, SMS only, both (the one used last is preferred), web chat only,
no conversation at all (skipped ``no_channel``) or opted out (skipped ``opted_out``).
:func:`customers` builds them deterministically, in exact proportions (:class:`Mix`);
:func:`seed_backend` writes them into a reference-backends SQLite file (bulk inserts) and
:func:`seed_redis` writes their conversations into Redis the way the product does, pipelined:
bindings (with the by-account index ``pd:bindings:account:<account>`` that ``CustomerStore.bind``
keeps) and outage subscriptions with :class:`~integrations.customer_store.CustomerStore`'s keys,
the last-used mark ``pd:seen:<conversation>``, opt-outs in :data:`channels.optout.OPT_OUT_KEY`.
:func:`tally` compares what the fakes accepted per recipient with what each customer should have
got: duplicates, missing, and messages to customers who should have got none.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channels.optout import OPT_OUT_KEY
from integrations.customer_store import BINDING_INDEX_MARKER, CustomerStore

KINDS = ("wechat", "sms", "both", "web", "none", "opted_out")
SEEN_TTL_SECONDS = 400 * 86400
WEB_IDLE_SECONDS = 30 * 86400
# The affected area: a real community of the reference city with no outage in the seed data.
PLACE = ("江宁区", "东山街道", "殷巷社区")
AREA = "殷巷社区殷巷路一带"


@dataclass(frozen=True)
class Mix:
    """Relative shares of the kinds of customers (whole numbers; exact over each cycle of
    their sum)."""

    wechat: int = 0
    sms: int = 0
    both: int = 0
    web: int = 0
    none: int = 0
    opted_out: int = 0

    def cycle(self) -> tuple[str, ...]:
        """One cycle of kinds, interleaved (not in blocks), e.g. 3 wechat + 1 sms →
        wechat, wechat, sms, wechat: customer i gets ``cycle[i % len(cycle)]``."""
        weights = {kind: getattr(self, kind) for kind in KINDS if getattr(self, kind) > 0}
        if not weights:
            raise ValueError("a mix needs at least one kind with a positive share")
        total = sum(weights.values())
        # Largest-remainder interleaving: kind k is due every total/w_k positions.
        credit = dict.fromkeys(weights, 0)
        order = []
        for _ in range(total):
            for kind, weight in weights.items():
                credit[kind] += weight
            kind = max(credit, key=lambda k: (credit[k], -KINDS.index(k)))
            credit[kind] -= total
            order.append(kind)
        return tuple(order)


BENCH_MIX = Mix(wechat=7, sms=2, both=1)                                  # every customer reachable
TEST_MIX = Mix(wechat=10, sms=5, both=3, web=1, none=1, opted_out=1)       # every path of the audience


@dataclass(frozen=True)
class Customer:
    """One audience member: account number, phone on record, conversations (preferred first:
    the last used) and whether the preferred conversation opted out."""

    index: int
    kind: str
    account: str
    phone: str
    openid: str | None = None
    web_session: str | None = None
    conversations: tuple[str, ...] = ()
    opted_out: tuple[str, ...] = ()
    subscribed: bool = True

    @property
    def reachable(self) -> bool:
        """Should receive exactly one message (else none, skipped with a reason)."""
        return bool(self.conversations) and not self.opted_out

    @property
    def skip_reason(self) -> str | None:
        """The reason the report must give for skipping this customer (None: must be sent)."""
        if not self.conversations:
            return "no_channel"
        if self.opted_out:
            return "opted_out"
        return None


def account_number(i: int) -> str:
    """Customer i's 户号: 10 digits starting with 8 (the seed data's start with 3)."""
    return f"8{i:09d}"


def phone_number(i: int) -> str:
    """Customer i's mobile: 198 + 8 digits (a prefix the seed data never uses)."""
    return f"198{i:08d}"


def openid_of(i: int) -> str:
    """Customer i's WeChat openid (28 characters like WeChat's)."""
    return f"oPDbc{i:023d}"


def web_session_of(i: int) -> str:
    """Customer i's web chat session id."""
    return f"{i:032x}"


def customer(i: int, kind: str) -> Customer:
    """Customer i of ``kind`` (see :data:`KINDS`)."""
    account, phone = account_number(i), phone_number(i)
    wechat, sms = f"wechat:{openid_of(i)}", f"sms:{phone}"
    if kind == "wechat":
        return Customer(i, kind, account, phone, openid_of(i), conversations=(wechat,),
                        subscribed=i % 2 == 0)
    if kind == "sms":
        return Customer(i, kind, account, phone, conversations=(sms,), subscribed=i % 2 == 0)
    if kind == "both":  # alternately WeChat or SMS used last
        convs = (wechat, sms) if i % 2 == 0 else (sms, wechat)
        return Customer(i, kind, account, phone, openid_of(i), conversations=convs)
    if kind == "web":
        return Customer(i, kind, account, phone, web_session=web_session_of(i),
                        conversations=(f"web:{web_session_of(i)}",))
    if kind == "none":
        return Customer(i, kind, account, phone)
    if kind == "opted_out":  # alternately a WeChat or an SMS conversation, opted out
        if i % 2 == 0:
            return Customer(i, kind, account, phone, openid_of(i), conversations=(wechat,),
                            opted_out=(wechat,))
        return Customer(i, kind, account, phone, conversations=(sms,), opted_out=(sms,))
    raise ValueError(f"unknown kind {kind!r}")


def customers(n: int, mix: Mix) -> Iterator[Customer]:
    """The first ``n`` customers of ``mix``."""
    cycle = mix.cycle()
    for i in range(n):
        yield customer(i, cycle[i % len(cycle)])


# ---- seeding ---------------------------------------------------------------------------------

OUTAGE_COLUMNS = ("outage_id", "kind", "district", "street", "community", "affected_area", "reason",
                  "day_offset", "start_clock", "end_clock", "start_offset_min", "end_offset_min",
                  "restored_offset_min")
ACCOUNT_COLUMNS = ("account_number", "name", "customer_type", "address", "district", "street",
                   "community", "tariff_code", "status", "phone", "base_kwh", "peak_percent", "payer",
                   "unpaid_bills", "credit_fen")


@dataclass(frozen=True)
class Outage:
    """The fault outage whose affected area holds the audience (ongoing, not restored)."""

    outage_id: str = "GZ90001"
    place: tuple[str, str, str] = PLACE
    area: str = AREA
    reason: str = "10千伏线路故障跳闸"

    def row(self) -> tuple[Any, ...]:
        district, street, community = self.place
        return (self.outage_id, "fault", district, street, community, self.area, self.reason,
                None, None, None, -30, 150, None)


OUTAGE = Outage()


def _account_row(c: Customer, place: tuple[str, str, str]) -> tuple[Any, ...]:
    district, street, community = place
    return (c.account, f"压测用户{c.index}", "residential",
            f"宁州市{district}{street}{community}殷巷路{c.index % 200 * 8 + 8}号{c.index % 24 + 1}栋",
            district, street, community, "RES_TIERED", "active", c.phone, 200, 0, "prompt", 0, 0)


def seed_backend(path: Path, audience: Iterable[Customer], outage: Outage = OUTAGE) -> int:
    """A reference-backends database at ``path``: the seed data, minus its accounts in the
    outage's area, plus ``outage`` and the audience's accounts there. Returns how many."""
    from backends.db import Database
    from backends.seed import seed_if_empty

    db = Database(path)
    try:
        seed_if_empty(db)
        count = 0
        insert = (f"INSERT INTO accounts ({', '.join(ACCOUNT_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(ACCOUNT_COLUMNS))})")
        with db.transaction() as conn:
            conn.execute("DELETE FROM accounts WHERE district = ? AND street = ? AND community = ?",
                         outage.place)
            conn.execute(f"INSERT OR REPLACE INTO outages ({', '.join(OUTAGE_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(OUTAGE_COLUMNS))})", outage.row())
            batch: list[tuple[Any, ...]] = []
            for c in audience:
                batch.append(_account_row(c, outage.place))
                if len(batch) == 5000:
                    conn.executemany(insert, batch)
                    count += len(batch)
                    batch.clear()
            conn.executemany(insert, batch)
            count += len(batch)
        return count
    finally:
        db.close()


def _account_bindings_key(account: str) -> str:
    """The reverse index of bindings (account → conversations) that CustomerStore.bind keeps."""
    helper = getattr(CustomerStore, "_account_bindings_key", None)
    return helper(account) if helper else f"pd:bindings:account:{account}"


def redis_commands(c: Customer, now: float) -> Iterator[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """The Redis writes that make ``c``'s conversations exist, as (method, args, kwargs) of
    redis-py: what binding, subscribing, talking and opting out leave behind."""
    # The last used conversation is the first: it talked most recently.
    for rank, cid in enumerate(c.conversations):
        ttl = WEB_IDLE_SECONDS if cid.startswith("web:") else None
        yield "set", (CustomerStore._binding_key(cid), c.account), {"ex": ttl}
        yield "sadd", (_account_bindings_key(c.account), cid), {}
        if c.subscribed:
            yield "sadd", (CustomerStore._subs_key(cid), f"{c.account}|outage"), {}
            yield "sadd", (CustomerStore._subscribers_key(c.account, "outage"), cid), {}
            if ttl:
                yield "expire", (CustomerStore._subs_key(cid), ttl), {}
        yield "set", (f"pd:seen:{cid}", str(int(now) - 3600 - 600 * rank)), {"ex": SEEN_TTL_SECONDS}
    for cid in c.opted_out:
        yield "hset", (OPT_OUT_KEY, cid, str(int(now) - 86400)), {}


async def seed_redis(redis: Any, audience: Iterable[Customer], now: float | None = None,
                     batch: int = 2000) -> int:
    """Write every customer's conversations (:func:`redis_commands`), ``batch`` customers per
    pipeline round trip. Returns the number of commands."""
    now = time.time() if now is None else now
    total = 0
    pipe = redis.pipeline(transaction=False)
    # As in a Redis the gateway has run on: the reverse index of bindings is complete (the
    # one-time SCAN of CustomerStore.ensure_binding_index is not part of a broadcast).
    pipe.set(BINDING_INDEX_MARKER, str(int(now)))
    pending = 0
    for c in audience:
        for method, args, kwargs in redis_commands(c, now):
            getattr(pipe, method)(*args, **{k: v for k, v in kwargs.items() if v is not None})
            total += 1
        pending += 1
        if pending >= batch:
            await pipe.execute()
            pending = 0
    if pending:
        await pipe.execute()
    return total


# ---- counting --------------------------------------------------------------------------------

@dataclass
class Tally:
    """What the providers accepted compared with what each customer should have received."""

    audience: int = 0
    expected: int = 0                  # customers who must receive exactly one message
    received: int = 0                  # messages accepted for the audience, all channels
    duplicates: int = 0                # messages beyond the first to one customer
    missing: int = 0                   # reachable customers who received nothing
    unexpected: int = 0                # messages to customers who must be skipped
    strangers: int = 0                 # messages to recipients outside the audience
    by_channel: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few account numbers

    @property
    def exactly_once(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected or self.strangers)

    def summary(self) -> str:
        return (f"audience {self.audience}, expected {self.expected}, received {self.received}, "
                f"duplicates {self.duplicates}, missing {self.missing}, unexpected "
                f"{self.unexpected}, strangers {self.strangers}, by channel {self.by_channel}")


def tally(audience: Iterable[Customer], counts: Mapping[str, Mapping[str, int]],
          examples: int = 5) -> Tally:
    """Compare ``counts`` — messages accepted per recipient: ``{"wechat": {openid: n}, "sms":
    {phone: n}, "web": {session: n}}`` (other channel names are added to ``sms`` when their
    keys are phones, e.g. ``aliyun``/``tencent``) — with the audience."""
    by_recipient: dict[str, dict[str, int]] = {"wechat": {}, "sms": {}, "web": {}}
    for channel, per in counts.items():
        target = by_recipient["sms" if channel in ("aliyun", "tencent") else channel]
        for recipient, n in per.items():
            target[recipient] = target.get(recipient, 0) + int(n)
    result = Tally(by_channel={ch: sum(per.values()) for ch, per in by_recipient.items()})
    seen: dict[str, set[str]] = {"wechat": set(), "sms": set(), "web": set()}

    def note(name: str, account: str) -> None:
        bucket = result.examples.setdefault(name, [])
        if len(bucket) < examples:
            bucket.append(account)

    for c in audience:
        result.audience += 1
        got = 0
        for channel, recipient in (("wechat", c.openid), ("sms", c.phone), ("web", c.web_session)):
            if recipient is not None:
                got += by_recipient[channel].get(recipient, 0)
                seen[channel].add(recipient)
        result.received += got
        if c.reachable:
            result.expected += 1
            if got == 0:
                result.missing += 1
                note("missing", c.account)
            elif got > 1:
                result.duplicates += got - 1
                note("duplicates", c.account)
        elif got:
            result.unexpected += got
            note("unexpected", c.account)
    for channel, per in by_recipient.items():
        stray = {r: n for r, n in per.items() if r not in seen[channel]}
        result.strangers += sum(stray.values())
        for recipient in list(stray)[:examples]:
            note("strangers", f"{channel}:{recipient}")
    return result


def report_adds_up(report: Mapping[str, Any], audience: Sequence[Customer]) -> list[str]:
    """Problems with a campaign report (``report CAMPAIGN_ID --json``; empty = fine): every
    audience member is counted once, as sent, skipped (with a reason) or failed, none is still
    open, and the skips the audience implies are there with their reasons."""
    problems = []
    totals = report.get("totals") or {}
    if report.get("audience") != len(audience):
        problems.append(f"audience {report.get('audience')} != {len(audience)} customers seeded")
    if report.get("open"):
        problems.append(f"{report.get('open')} recipients still open")
    total = sum(int(totals.get(state) or 0) for state in ("sent", "failed", "skipped"))
    if total != len(audience):
        problems.append(f"sent + failed + skipped = {total} != audience {len(audience)}")
    skipped: dict[str, int] = {}
    for channel in (report.get("channels") or {}).values():
        for reason, n in (channel.get("skipped") or {}).items():
            skipped[reason] = skipped.get(reason, 0) + int(n)
    if "" in skipped:
        problems.append(f"{skipped['']} skipped without a reason")
    for reason in ("no_channel", "opted_out"):
        want = sum(1 for c in audience if c.skip_reason == reason)
        if skipped.get(reason, 0) != want:
            problems.append(f"skipped {reason}: {skipped.get(reason, 0)} != {want}")
    return problems
