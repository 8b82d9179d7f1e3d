"""Replies to a notice, answered in its context by the real Rasa (issue 11): a notice goes out
through the broadcast workers' path (``standalone_deliverer`` → ``Deliverer.deliver`` → the web
chat outbox) to a web chat conversation bound to a 户号; the customer then answers on the
session's gateway, whose router passes the notice to Rasa as metadata, and the assistant
answers about THAT outage or bill, fresh from the reference backends. Marker ``e2e``."""
from __future__ import annotations

import contextlib
import time
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from backends import demo_accounts as demo
from channels.app import standalone_deliverer
from channels.config import GatewayConfig
from channels.messages import Notice
from fakes.webclient import WebClient, texts
from tests.actions.account_data import backend_get, bind

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def customer(gateway_url: str, redis_url: str, account: str | None):
    """A web chat customer on the session's gateway, bound to ``account`` when given."""
    web = await WebClient().connect(gateway_url)
    try:
        conv = f"web:{await web.session(None)}"
        if account:
            await bind(redis_url, conv, account)
        yield web, conv
    finally:
        await web.close()


async def deliver(redis_url: str, conv: str, web: WebClient, notice: Notice) -> None:
    """Send ``notice`` the way the broadcast workers do, and let the customer see it."""
    config = GatewayConfig.from_env({"REDIS_URL": redis_url, "DELIVERY_QUIET_HOURS": "off",
                                     "DELIVERY_RATE_LIMITS": "off"})
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with standalone_deliverer(config, client) as deliverer:
            result = await deliverer.deliver(conv, notice, "notice")
    finally:
        await client.aclose()
    assert result.status == "sent", result
    # The notice itself, through the gateway's outbox: its text, then its card (custom).
    seen = [await web.next(10)]
    while "notice" not in seen[-1]:
        seen.append(await web.next(10))
    assert seen[-1]["notice"]["kind"] == notice.kind, seen


def money(value) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.01'))}元"


async def test_when_does_power_come_back_is_about_the_notices_outage(gateway_url, redis_url,
                                                                      backends_url):
    found = (await backend_get(backends_url, "/outage/outages", account_number=demo.OVERDUE,
                               status="ongoing"))["outages"]
    assert found, "the reference data has an ongoing fault at the OVERDUE account"
    outage = found[0]
    async with customer(gateway_url, redis_url, demo.OVERDUE) as (web, conv):
        notice = Notice("outage_notice", {"outage_id": outage["outage_id"],
                                          "area": outage["affected_area"],
                                          "community": outage["community"],
                                          "start": "11月28日 14:00", "end": "11月28日 18:00",
                                          "reason": outage["reason"]},
                        urgent=True, key=f"bc:outage:{outage['outage_id']}:fault:{demo.OVERDUE}")
        await deliver(redis_url, conv, web, notice)
        answer = texts(await web.ask("什么时候来电"))
        assert answer.startswith("您好，您收到通知的停电目前仍在进行："), answer
        assert outage["reason"] in answer and "预计恢复供电：" in answer
        client = aioredis.Redis.from_url(redis_url)
        try:  # the gateway marked the conversation as used just now
            assert int(time.time()) - int(await client.get(f"pd:seen:{conv}")) < 120
        finally:
            await client.aclose()


async def test_already_paid_and_how_to_pay_are_about_the_notices_bill(gateway_url, redis_url,
                                                                       backends_url):
    bill = (await backend_get(backends_url, f"/billing/accounts/{demo.OVERDUE}/bills",
                              limit=1))["bills"][0]
    assert bill["status"] != "paid"
    year, month = (int(x) for x in bill["month"].split("-"))
    due_year, due_month, due_day = (int(x) for x in bill["due_date"].split("-"))
    due = f"{due_year}年{due_month}月{due_day}日"
    notice = Notice("bill_due", {"account": f"******{demo.OVERDUE[-4:]}", "month": f"{year}年{month}月",
                                 "bill_month": bill["month"], "amount": str(bill["amount"]),
                                 "due_date": due, "due_date_iso": bill["due_date"], "days_left": "3"},
                    key=f"bc:due_reminder:{bill['due_date']}:3:{demo.OVERDUE}")
    async with customer(gateway_url, redis_url, demo.OVERDUE) as (web, conv):
        await deliver(redis_url, conv, web, notice)
        answer = texts(await web.ask("已经交了"))
        assert answer.startswith(f"暂未查询到户号******{demo.OVERDUE[-4:]} {year}年{month}月电费的缴清记录"), answer
        assert f"缴费截止日期{due}" in answer and "到账可能需要一些时间" in answer
        assert demo.OVERDUE not in answer
        answer = texts(await web.ask("怎么交"))
        assert answer.startswith(f"您收到的通知中，{year}年{month}月电费为{bill['amount']}元，"
                                 f"缴费截止日期{due}。"), answer
        assert "您可以通过以下方式缴纳电费" in answer


async def test_already_paid_from_an_unverified_conversation_asks_for_verification(
        gateway_url, redis_url):
    notice = Notice("bill_summary", {"account": f"******{demo.OVERDUE[-4:]}", "amount": "88.00"},
                    key=f"bc:bill_issued:2026-10:{demo.OVERDUE}")
    async with customer(gateway_url, redis_url, None) as (web, conv):
        await deliver(redis_url, conv, web, notice)
        answer = texts(await web.ask("我交过了"))
        assert "需要先验证您的户号" in answer and "应缴" not in answer, answer


async def test_without_a_notice_when_does_power_come_back_is_the_ordinary_query(gateway_url,
                                                                                redis_url):
    async with customer(gateway_url, redis_url, demo.OVERDUE) as (web, _):
        answer = texts(await web.ask("什么时候来电"))
        assert "您收到通知的" not in answer
        assert f"您绑定的户号（******{demo.OVERDUE[-4:]}）所在区域" in answer, answer
