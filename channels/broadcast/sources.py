"""Who gets which notice: the broadcast campaigns due now and their audiences.

:meth:`BroadcastSources.plans` turns a campaign kind into the campaigns due at ``now``, with
deterministic ids, so planning the same moment twice (two schedulers, a re-run) names the same
campaigns and the engine sends each at most once:

* ``bill_issued:<yyyy-mm>`` — the bills of the last full month (``bill_summary``);
* ``due_reminder:<due date>:<days>`` — unpaid bills due on that date, from ``days`` days before
  it (``bill_due``); one campaign per due date within the window, so a bill is reminded once;
* ``arrears:<yyyy-mm>`` — accounts with overdue bills, once a month (``arrears``), and
  ``arrears:low_balance:<yyyy>-W<ww>`` — prepaid credit below ``BROADCAST_LOW_BALANCE_YUAN``,
  once an ISO week (``low_balance``);
* ``outage:<id>:<stage>`` (``:r<revision>`` once the window was moved) — a planned outage at
  stage ``notice`` (starting within ``BROADCAST_OUTAGE_NOTICE_DAYS``) or ``imminent`` (within
  ``BROADCAST_OUTAGE_IMMINENT_HOURS``), a fault outage at stage ``fault`` (urgent)
  (``outage_notice``);
* ``restoration:<id>`` — an outage restored within ``BROADCAST_RESTORATION_LOOKBACK_HOURS``
  (``power_restored``).

:meth:`BroadcastSources.recipients` streams a campaign's audience from the backends a page at
a time: one :class:`Recipient` per account, with every conversation that may reach it (the
subscribers of the kind — ``bill_due`` for bills, ``outage`` for outages — and, for outages,
every conversation bound to an account of the affected area), the preferred one first (the
one used last, ``pd:seen:<conversation>``, unless ``BROADCAST_CHANNEL_PREFERENCE`` orders the
channels), the phone on record for the SMS fallback and the notice parameters. An account with
no conversation is yielded with none, so the engine counts it as skipped. Everything a
campaign's audience needs is in its plan's ``subject``, so a plan rebuilt from the stored
campaign reads the same audience again. Backend failures propagate (``IntegrationError``); the
engine resumes planning later.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Optional

from channels.broadcast.config import BroadcastConfig
from channels.redis_text import redis_text
from integrations.billing import Bill, BillingClient
from integrations.customer_store import CustomerStore
from integrations.masking import mask_account
from integrations.outage import Outage, OutageClient, OutageNotFound

log = logging.getLogger(__name__)

SEEN_KEY = "pd:seen:{}"
OUTAGE_KIND_TEXT = {"planned": "计划停电", "fault": "故障停电"}
STAGE_TITLES = {"notice": "计划停电通知", "imminent": "计划停电临近提醒", "fault": "故障停电通知",
                "restored": "恢复供电通知"}
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class CampaignPlan:
    """One campaign: what is announced (``subject``), to whom it is decided by :meth:`recipients`."""

    campaign_id: str
    kind: str  # bill_issued | due_reminder | arrears | outage | restoration
    stage: str
    notice_kind: str  # the template: bill_summary, bill_due, arrears, low_balance, outage_notice, power_restored
    urgent: bool
    title: str  # Chinese, for operators
    subject: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipient:
    """One customer (户号) of a campaign and every conversation that may reach them, preferred first."""

    customer: str
    conversations: tuple[str, ...]
    phone: Optional[str]
    params: dict[str, str]


# ---- formatting of notice parameters (see the README: kinds and parameters) -----------------

def money(value: Decimal) -> str:
    return str(value.quantize(_CENT))


def month_text(month: str) -> str:
    """``2026-10`` → ``2026年10月``."""
    return f"{int(month[:4])}年{int(month[5:7])}月"


def date_text(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def time_text(moment: datetime) -> str:
    return f"{moment.month}月{moment.day}日 {moment:%H:%M}"


def _bill_params(bill: Bill) -> dict[str, str]:
    return {"month": month_text(bill.month), "bill_month": bill.month, "amount": money(bill.amount),
            "kwh": str(bill.kwh_total), "due_date": date_text(bill.due_date),
            "due_date_iso": bill.due_date.isoformat()}


def _outage_subject(outage: Outage, stage: str) -> dict[str, str]:
    def stamp(moment: Optional[datetime]) -> str:
        return moment.isoformat() if moment else ""

    return {"outage_id": outage.outage_id, "outage_kind": outage.kind, "status": outage.status,
            "stage": stage, "revision": str(outage.revision), "area": outage.affected_area,
            "district": outage.district, "street": outage.street, "community": outage.community,
            "reason": outage.reason, "start_iso": stamp(outage.start_time), "end_iso": stamp(outage.end_time),
            "restored_at_iso": stamp(outage.restored_at),
            "previous_start_iso": stamp(outage.previous_start_time),
            "previous_end_iso": stamp(outage.previous_end_time)}


def outage_params(subject: dict[str, str]) -> dict[str, str]:
    """The notice parameters of an outage plan (the same for every recipient)."""
    params = {k: subject[k] for k in ("outage_id", "outage_kind", "stage", "area", "district", "street",
                                      "community", "reason", "start_iso", "end_iso")}
    params["outage_kind_text"] = OUTAGE_KIND_TEXT.get(subject["outage_kind"], "停电")
    start = datetime.fromisoformat(subject["start_iso"])
    params["start"] = time_text(start)
    end = time_text(datetime.fromisoformat(subject["end_iso"])) if subject["end_iso"] else "待定"
    params["end"] = params["restore_time"] = end
    params["rescheduled"] = "1" if subject.get("previous_start_iso") else "0"
    if subject.get("previous_start_iso"):
        params["previous_start"] = time_text(datetime.fromisoformat(subject["previous_start_iso"]))
        params["previous_end"] = time_text(datetime.fromisoformat(subject["previous_end_iso"]))
    if subject.get("restored_at_iso"):
        params["restored_at_iso"] = subject["restored_at_iso"]
        params["restored_at"] = time_text(datetime.fromisoformat(subject["restored_at_iso"]))
    return params


def channel_of(conversation_id: str) -> str:
    return conversation_id.partition(":")[0]


def order_conversations(conversations: Iterable[str], seen: dict[str, int],
                        preference: Sequence[str] = ()) -> tuple[str, ...]:
    """Preferred first: with no ``preference``, the one used last (``seen``: unix seconds; never
    seen = oldest); otherwise by the channel order given, the one used last first within a
    channel. Ties by id, so the order is deterministic."""
    rank = {channel: i for i, channel in enumerate(preference)}

    def key(cid: str) -> tuple:
        recency = (-seen.get(cid, 0), cid)
        return ((rank.get(channel_of(cid), len(rank)),) if rank else ()) + recency

    return tuple(sorted(set(conversations), key=key))


# ---- the sources ----------------------------------------------------------------------------

class BroadcastSources:
    """Campaign plans and audiences from the billing and outage backends and the customer store."""

    def __init__(self, billing: BillingClient, outage: OutageClient, store: CustomerStore, redis: Any,
                 config: BroadcastConfig) -> None:
        self.billing = billing
        self.outage = outage
        self.store = store
        self.redis = redis
        self.config = config
        self._binding_index_ready = False

    # ---- plans ------------------------------------------------------------------------------

    async def plans(self, kind: str, *, outage_id: Optional[str] = None, due_within: Optional[int] = None,
                    now: datetime) -> list[CampaignPlan]:
        """The campaigns of ``kind`` due at ``now`` (aware). ``outage_id`` picks one outage
        (kinds outage and restoration; a planned outage is then announced even before its notice
        period); ``due_within`` overrides ``BROADCAST_DUE_REMINDER_DAYS``. Every campaign due is
        returned, sent or not: the engine skips those it already has."""
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        if kind == "bill_issued":
            return [self._bill_issued(now)]
        if kind == "due_reminder":
            days = self.config.due_reminder_days if due_within is None else due_within
            if days < 0:
                raise ValueError("due_within must be >= 0")
            return await self._due_reminders(now, days)
        if kind == "arrears":
            return self._arrears(now)
        if kind == "outage":
            return await self._outage_plans(now, outage_id)
        if kind == "restoration":
            return await self._restoration_plans(now, outage_id)
        raise ValueError(f"unknown campaign kind {kind!r}")

    @staticmethod
    def _plan(campaign_id: str, kind: str, stage: str, notice_kind: str, title: str,
              subject: dict[str, str], urgent: bool = False) -> CampaignPlan:
        return CampaignPlan(campaign_id, kind, stage, notice_kind, urgent, title, subject)

    def _bill_issued(self, now: datetime) -> CampaignPlan:
        first = now.date().replace(day=1)
        month = (first - timedelta(days=1)).strftime("%Y-%m")
        return self._plan(f"bill_issued:{month}", "bill_issued", "issued", "bill_summary",
                          f"{month_text(month)}电费账单通知", {"month": month})

    async def _due_reminders(self, now: datetime, days: int) -> list[CampaignPlan]:
        plans = []
        for offset in range(days + 1):
            due = now.date() + timedelta(days=offset)
            probe = await self.billing.due_bills_page(due, due, limit=1)
            if not probe.items and probe.next is None:
                continue
            plans.append(self._plan(
                f"due_reminder:{due.isoformat()}:{days}", "due_reminder", "due", "bill_due",
                f"缴费提醒：{date_text(due)}到期的电费（提前{days}天）",
                {"due_date": due.isoformat(), "days": str(days), "date": now.date().isoformat()}))
        return plans

    def _arrears(self, now: datetime) -> list[CampaignPlan]:
        month = now.strftime("%Y-%m")
        year, week, _ = now.date().isocalendar()
        below = money(self.config.low_balance_yuan)
        return [
            self._plan(f"arrears:{month}", "arrears", "arrears", "arrears", f"欠费提醒（{month_text(month)}）",
                       {"month": month}),
            self._plan(f"arrears:low_balance:{year}-W{week:02d}", "arrears", "low_balance", "low_balance",
                       f"预付费余额不足{below}元提醒（{year}年第{week}周）", {"below": below}),
        ]

    def _outage_stage(self, outage: Outage, now: datetime, forced: bool) -> Optional[str]:
        """The notice stage an outage is due for at ``now``, or None."""
        if outage.kind == "fault":
            return "fault" if outage.status == "ongoing" and (forced or outage.announced_at <= now) else None
        if outage.status != "scheduled" or outage.start_time <= now:
            return None
        if not forced and outage.announced_at > now:
            return None  # not published yet
        left = outage.start_time - now
        if self.config.outage_imminent_hours and left <= timedelta(hours=self.config.outage_imminent_hours):
            return "imminent"
        if forced or left <= timedelta(days=self.config.outage_notice_days):
            return "notice"
        return None

    def _outage_plan(self, outage: Outage, stage: str) -> CampaignPlan:
        revision = f":r{outage.revision}" if outage.revision > 1 else ""
        subject = _outage_subject(outage, stage)
        when = time_text(outage.start_time)
        title = f"{STAGE_TITLES[stage]}：{outage.community}（{when}起）"
        if revision:
            title += f"（改期，第{outage.revision}版）"
        return self._plan(f"outage:{outage.outage_id}:{stage}{revision}", "outage", stage, "outage_notice",
                          title, subject, urgent=stage == "fault")

    async def _one_outage(self, outage_id: str) -> Optional[Outage]:
        try:
            return await self.outage.get_outage(outage_id)
        except OutageNotFound:
            return None

    async def _outage_plans(self, now: datetime, outage_id: Optional[str]) -> list[CampaignPlan]:
        if outage_id is not None:
            candidates = [o for o in [await self._one_outage(outage_id)] if o is not None]
        else:
            candidates = (await self.outage.find_outages(status="planned")
                          + [o for o in await self.outage.find_outages(status="ongoing") if o.kind == "fault"])
        plans = []
        for outage in candidates:
            stage = self._outage_stage(outage, now, forced=outage_id is not None)
            if stage is not None:
                plans.append(self._outage_plan(outage, stage))
        return sorted(plans, key=lambda p: p.campaign_id)

    async def _restoration_plans(self, now: datetime, outage_id: Optional[str]) -> list[CampaignPlan]:
        if outage_id is not None:
            one = await self._one_outage(outage_id)
            restored = [one] if one is not None and one.status == "restored" else []
        else:
            since = now - timedelta(hours=self.config.restoration_lookback_hours)
            restored = [c.outage async for page in self.outage.changes(since) for c in page
                        if c.change == "restored" and c.outage.restored_at and c.outage.restored_at <= now]
        return [self._plan(f"restoration:{o.outage_id}", "restoration", "restored", "power_restored",
                           f"{STAGE_TITLES['restored']}：{o.community}（{time_text(o.restored_at or o.end_time)}）",
                           _outage_subject(o, "restored")) for o in restored]

    # ---- audiences --------------------------------------------------------------------------

    async def recipients(self, plan: CampaignPlan, page_size: int = 500) -> AsyncIterator[Recipient]:
        """The plan's audience, one :class:`Recipient` per account, read a page at a time."""
        async for page in self._pages(plan, page_size):
            for recipient in await self._resolve(plan, page):
                yield recipient

    async def _pages(self, plan: CampaignPlan, page_size: int) -> AsyncIterator[list[tuple[str, Optional[str],
                                                                                            dict[str, str]]]]:
        """(account, phone, params) per account, a page at a time."""
        subject = plan.subject
        if plan.kind == "bill_issued":
            async for page in self.billing.month_bills(subject["month"], page_size):
                yield [(b.account.account_number, b.account.mobile, _bill_params(b.bill)) for b in page
                       if b.bill.status != "paid" and b.bill.amount > 0]
        elif plan.kind == "due_reminder":
            due = date.fromisoformat(subject["due_date"])
            run_day = date.fromisoformat(subject["date"])
            async for page in self.billing.due_bills(due, due, page_size):
                yield [(b.account.account_number, b.account.mobile,
                        {**_bill_params(b.bill), "days_left": str(max((b.bill.due_date - run_day).days, 0))})
                       for b in page]
        elif plan.kind == "arrears" and plan.stage == "low_balance":
            async for page in self.billing.low_balance(Decimal(subject["below"]), page_size):
                yield [(p.account.account_number, p.account.mobile,
                        {"balance": money(p.balance), "threshold": subject["below"]}) for p in page]
        elif plan.kind == "arrears":
            async for page in self.billing.arrears(page_size):
                yield [(a.account.account_number, a.account.mobile, _arrears_params(a.arrears, a.bills))
                       for a in page if a.bills]
        elif plan.kind in ("outage", "restoration"):
            params = outage_params(subject)
            async for page in self.billing.area_accounts(subject["district"], subject["street"],
                                                         subject["community"], page_size):
                yield [(c.account_number, c.mobile, dict(params)) for c in page]
        else:
            raise ValueError(f"unknown campaign kind {plan.kind!r}")

    async def _resolve(self, plan: CampaignPlan, page: list[tuple[str, Optional[str], dict[str, str]]]
                       ) -> list[Recipient]:
        """The conversations of a page of accounts, in a few pipelined round trips."""
        if not page:
            return []
        merged: dict[str, tuple[Optional[str], dict[str, str]]] = {}
        for account, phone, params in page:
            merged.setdefault(account, (phone, params))  # an account's first item wins
        accounts = list(merged)
        outage = plan.kind in ("outage", "restoration")
        if outage and not self._binding_index_ready:
            indexed = await self.store.ensure_binding_index()
            if indexed:
                log.info("indexed %d bindings made before the reverse index", indexed)
            self._binding_index_ready = True
        conversations = await self.store.reachable_of_many(accounts, "outage" if outage else "bill_due",
                                                           bound=outage)
        seen = await self._seen([cid for cids in conversations.values() for cid in cids])
        return [Recipient(account, order_conversations(conversations[account], seen,
                                                       self.config.channel_preference),
                          merged[account][0] or None,
                          {"account": mask_account(account), **merged[account][1]})
                for account in accounts]

    async def _seen(self, conversations: list[str]) -> dict[str, int]:
        """``pd:seen:<conversation>`` (unix seconds of the last inbound message) of each."""
        if not conversations:
            return {}
        unique = list(dict.fromkeys(conversations))
        keys = [SEEN_KEY.format(cid) for cid in unique]
        if hasattr(self.redis, "get_nodes"):  # a Redis Cluster: the keys live in many slots
            pipe = self.redis.pipeline(transaction=False)
            for k in keys:
                pipe.get(k)
            values = await pipe.execute()
        else:
            values = await self.redis.mget(keys)
        seen = {}
        for cid, value in zip(unique, values):
            text = redis_text(value) if value is not None else ""
            if text.isascii() and text.isdigit():
                seen[cid] = int(text)
        return seen


def _arrears_params(total: Decimal, bills: Sequence[Bill]) -> dict[str, str]:
    oldest = bills[0]
    return {"amount": money(total), "months": "、".join(month_text(b.month) for b in bills),
            "bill_month": oldest.month, "due_date": date_text(oldest.due_date),
            "due_date_iso": oldest.due_date.isoformat()}
