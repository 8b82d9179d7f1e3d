"""Replies to a notice (actions/notice_context.py) through the real action server: trackers whose
latest message carries the gateway's ``metadata["notice"]``, answers checked against the
reference backends read over HTTP."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from backends import demo_accounts as demo
from tests.actions.account_data import backend_get, bind, customer_store, sender
from tests.support.actions import entity, run_action, slot_events, texts, user_message


def notice(kind: str, customer: str | None, campaign: str, **params: str) -> dict:
    key = f"bc:{campaign}:{customer}" if customer else ""
    return {"kind": kind, "params": params, "key": key, "at": int(time.time()) - 3600}


def said(text: str, intent: str, meta_notice: dict | None, entities: list | None = None) -> dict:
    message = user_message(text, intent, entities)
    message["metadata"] = {"channel": "web", **({"notice": meta_notice} if meta_notice else {})}
    return message


def money(value) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.01'))}元"


async def latest_bill(backends_url: str, account: str) -> dict:
    return (await backend_get(backends_url, f"/billing/accounts/{account}/bills", limit=1))["bills"][0]


def bill_notice(account: str, bill: dict, kind: str = "bill_due") -> dict:
    year, month = bill["month"].split("-")
    return notice(kind, account, "due_reminder:2026-11-22:3", account="******" + account[-4:],
                  month=f"{int(year)}年{int(month)}月", bill_month=bill["month"],
                  amount=str(bill["amount"]), due_date="2026年11月25日",
                  due_date_iso=bill["due_date"])


async def paid(url: str, conv: str, meta_notice: dict | None, text: str = "已经交了") -> dict:
    return await run_action(url, "action_check_payment", sender_id=conv,
                            latest_message=said(text, "inform_paid", meta_notice))


# -- "已经交了" ------------------------------------------------------------------------------------

async def test_paid_unpaid_bill_of_the_notice(action_server_url, backends_url, redis_url):
    conv, account = sender("paid"), demo.OVERDUE
    await bind(redis_url, conv, account)
    bill = await latest_bill(backends_url, account)
    assert bill["status"] != "paid"
    result = await paid(action_server_url, conv, bill_notice(account, bill))
    reply = texts(result)[0]
    owed = Decimal(str(bill["amount"])) - Decimal(str(bill["paid_amount"] or 0))
    year, month, day = (int(x) for x in bill["due_date"].split("-"))
    assert reply.startswith(f"暂未查询到户号******{account[-4:]} {int(bill['month'][:4])}年"
                            f"{int(bill['month'][5:])}月电费的缴清记录"), reply
    assert f"应缴{money(owed)}" in reply and f"缴费截止日期{year}年{month}月{day}日" in reply
    assert "到账可能需要一些时间" in reply and account not in reply
    assert slot_events(result) == {"needs_binding": False}


async def test_paid_bill_of_the_notice_is_confirmed_with_amount_and_date(action_server_url,
                                                                       backends_url, redis_url):
    conv, account = sender("paid"), demo.COMMERCIAL  # prepaid: every bill paid from its credit
    await bind(redis_url, conv, account)
    bill = await latest_bill(backends_url, account)
    assert bill["status"] == "paid"
    balance = await backend_get(backends_url, f"/billing/accounts/{account}/balance")
    reply = texts(await paid(action_server_url, conv, bill_notice(account, bill, "bill_summary"),
                             "我交过了"))[0]
    assert f"电费{money(bill['amount'])}已缴清" in reply, reply
    last = balance["last_payment"]
    assert f"最近一笔缴费：{money(last['amount'])}" in reply and last["channel"] in reply


async def test_arrears_notice_reports_what_is_still_owed(action_server_url, backends_url, redis_url):
    conv, account = sender("paid"), demo.OVERDUE
    await bind(redis_url, conv, account)
    balance = await backend_get(backends_url, f"/billing/accounts/{account}/balance")
    assert Decimal(str(balance["arrears"])) > 0
    meta = notice("arrears", account, "arrears:2026-11-28", amount=str(balance["arrears"]),
                  due_date="2026年10月25日")
    reply = texts(await paid(action_server_url, conv, meta))[0]
    assert f"当前仍欠费{money(balance['arrears'])}（最早一期缴费截止日期2026年10月25日）" in reply


@pytest.mark.parametrize("recharged", [True, False])
async def test_low_balance_notice_checks_for_a_recharge_since_the_notice(action_server_url,
                                                                        backends_url, redis_url,
                                                                        recharged):
    conv, account = sender("paid"), demo.COMMERCIAL
    await bind(redis_url, conv, account)
    balance = await backend_get(backends_url, f"/billing/accounts/{account}/balance")
    meta = notice("low_balance", account, "arrears:2026-11-28:low_balance", balance="32.50",
                  threshold="100.00")
    meta["at"] = 0 if recharged else int(time.time())  # the last payment is before now
    reply = texts(await paid(action_server_url, conv, meta, "充了100块钱了"))[0]
    assert f"当前账户余额{money(balance['balance'])}" in reply
    assert reply.startswith("已查询到" if recharged else "暂未查询到"), reply


async def test_unbound_conversation_is_asked_to_verify_the_notices_account(action_server_url):
    conv = sender("paid")
    meta = notice("bill_due", demo.OVERDUE, "due_reminder:2026-11-22:3", amount="88.00")
    result = await paid(action_server_url, conv, meta)
    events = slot_events(result)
    assert events["needs_binding"] is True and events["pending_request"] == "query_bill"
    assert events["account_number"] == demo.OVERDUE
    assert "验证" in texts(result)[0] and demo.OVERDUE not in texts(result)[0]


async def test_a_conversation_bound_to_another_account_sees_nothing_of_the_notices(
        action_server_url, redis_url):
    conv = sender("paid")
    await bind(redis_url, conv, demo.RESIDENTIAL_TOU)
    meta = notice("bill_due", demo.OVERDUE, "due_reminder:2026-11-22:3", amount="88.00")
    result = await paid(action_server_url, conv, meta)
    assert slot_events(result)["needs_binding"] is True
    assert "应缴" not in texts(result)[0] and "已缴清" not in texts(result)[0]


async def test_without_a_notice_the_bound_accounts_latest_bill_is_checked(action_server_url,
                                                                         backends_url, redis_url):
    conv, account = sender("paid"), demo.OVERDUE
    await bind(redis_url, conv, account)
    bill = await latest_bill(backends_url, account)
    reply = texts(await paid(action_server_url, conv, None))[0]
    assert f"{int(bill['month'][5:])}月电费的缴清记录" in reply
    outage_meta = notice("outage_notice", account, "outage:X1:fault", outage_id="X1")
    assert texts(await paid(action_server_url, conv, outage_meta))[0] == reply


# -- "怎么交" --------------------------------------------------------------------------------------

async def test_payment_methods_after_a_bill_notice_start_with_its_amount_and_due_date(
        action_server_url_backends_down):
    meta = notice("bill_summary", demo.OVERDUE, "bill_issued:2026-10", month="2026年10月",
                  amount="123.45", due_date="2026年11月25日")
    result = await run_action(action_server_url_backends_down, "action_list_payment_methods",
                              sender_id=sender("pay"),
                              latest_message=said("怎么交", "ask_payment_methods", meta))
    first, *rest = texts(result)[0].split("\n")
    assert first == "您收到的通知中，2026年10月电费为123.45元，缴费截止日期2026年11月25日。"
    assert rest[0] == "您好，您可以通过以下方式缴纳电费："
    arrears = notice("arrears", demo.OVERDUE, "arrears:2026-11-28", amount="245.10",
                     due_date="2026年10月25日")
    result = await run_action(action_server_url_backends_down, "action_list_payment_methods",
                              sender_id=sender("pay"),
                              latest_message=said("怎么交", "ask_payment_methods", arrears))
    assert texts(result)[0].startswith("您收到的通知中，欠费金额为245.10元，缴费截止日期2026年10月25日。")


async def test_payment_methods_after_an_outage_notice_are_unchanged(action_server_url_backends_down):
    meta = notice("outage_notice", demo.OVERDUE, "outage:X1:fault", outage_id="X1")
    result = await run_action(action_server_url_backends_down, "action_list_payment_methods",
                              sender_id=sender("pay"),
                              latest_message=said("怎么交", "ask_payment_methods", meta))
    assert texts(result)[0].startswith("您好，您可以通过以下方式缴纳电费：")


# -- "什么时候来电" --------------------------------------------------------------------------------

async def outages(backends_url: str) -> dict[str, dict]:
    found = (await backend_get(backends_url, "/outage/outages", status="all"))["outages"]
    return {o["outage_id"]: o for o in found}


async def ask_outage(url: str, meta: dict | None, text: str = "什么时候来电",
                     entities: list | None = None) -> dict:
    return await run_action(url, "action_query_outage", sender_id=sender("outage"),
                            latest_message=said(text, "query_outage", meta, entities))


def outage_notice(outage: dict, account: str | None = None, stage: str = "fault") -> dict:
    return notice("outage_notice", account, f"outage:{outage['outage_id']}:{stage}",
                  outage_id=outage["outage_id"], community=outage["community"])


async def test_an_ongoing_outage_of_the_notice_with_its_expected_restoration(action_server_url,
                                                                           backends_url):
    ongoing = [o for o in (await outages(backends_url)).values() if o["status"] == "ongoing"]
    assert ongoing
    result = await ask_outage(action_server_url, outage_notice(ongoing[0]))
    reply = texts(result)[0]
    assert reply.startswith("您好，您收到通知的停电目前仍在进行："), reply
    assert ongoing[0]["community"] in reply and "预计恢复供电：" in reply
    assert ongoing[0]["reason"] in reply
    assert slot_events(result) == {"area": None}


async def test_a_planned_outage_of_the_notice_says_when_power_returns(action_server_url,
                                                                    backends_url):
    planned = [o for o in (await outages(backends_url)).values() if o["status"] == "scheduled"]
    reply = texts(await ask_outage(action_server_url, outage_notice(planned[0], stage="notice")))[0]
    assert reply.startswith("您好，您收到通知的停电尚未开始，预计"), reply
    end = planned[0]["end_time"]
    assert f"{end[11:16]}恢复供电" in reply


async def test_a_restored_outage_of_the_notice(action_server_url, backends_url):
    restored = [o for o in (await outages(backends_url)).values() if o["status"] == "restored"]
    meta = notice("power_restored", None, "unused", outage_id=restored[0]["outage_id"],
                  community=restored[0]["community"])
    reply = texts(await ask_outage(action_server_url, meta, "来电了吗"))[0]
    assert reply.startswith(f"您好，您收到通知的{restored[0]['community']}停电已经恢复供电。"), reply


async def test_the_outage_id_is_read_from_the_broadcast_key_too(action_server_url, backends_url):
    ongoing = [o for o in (await outages(backends_url)).values() if o["status"] == "ongoing"]
    meta = notice("outage_notice", demo.OVERDUE, f"outage:{ongoing[0]['outage_id']}:fault")
    assert "仍在进行" in texts(await ask_outage(action_server_url, meta))[0]


async def test_a_named_area_or_an_unknown_outage_is_the_ordinary_query(action_server_url,
                                                                     backends_url):
    ongoing = [o for o in (await outages(backends_url)).values() if o["status"] == "ongoing"]
    text = "秣陵街道停电吗"
    named = await ask_outage(action_server_url, outage_notice(ongoing[0]), text,
                             [entity("area", "秣陵街道", text)])
    assert texts(named)[0].startswith("为您查到“秣陵街道”"), texts(named)
    unknown = notice("outage_notice", None, "x", outage_id="NO-SUCH-OUTAGE")
    result = await ask_outage(action_server_url, unknown)  # unbound: asked for an area
    assert result["responses"][0]["response"] == "utter_ask_query_outage_form_area"


async def test_the_outage_form_asks_no_area_about_a_notice(action_server_url):
    def form_call(meta):
        return run_action(action_server_url, "validate_query_outage_form", sender_id=sender("form"),
                          latest_message=said("什么时候来电", "query_outage", meta),
                          active_loop={"name": "query_outage_form"},
                          slots={"requested_slot": "area"})

    # No slot required any more: the form ends (requested_slot None); without a notice the
    # unbound conversation still has the area to give.
    with_notice = await form_call(notice("outage_notice", None, "x", outage_id="JH00001"))
    assert with_notice["events"] == [{"event": "slot", "timestamp": None,
                                      "name": "requested_slot", "value": None}]
    assert (await form_call(None))["events"] == []


# -- "TD" --------------------------------------------------------------------------------------------

async def td(url: str, conv: str, meta: dict | None, text: str = "TD") -> str:
    result = await run_action(url, "action_unsubscribe_reminder", sender_id=conv,
                              latest_message=said(text, "unsubscribe_reminder", meta))
    return texts(result)[0]


async def subscribed(redis_url: str, account: str) -> str:
    conv = sender("td")
    await bind(redis_url, conv, account)
    async with customer_store(redis_url) as store:
        await store.subscribe_reminder(conv, account, ("bill_due", "outage"))
    return conv


async def test_td_after_a_bill_notice_stops_only_bill_reminders(action_server_url, redis_url):
    conv = await subscribed(redis_url, demo.RESIDENTIAL_TOU)
    meta = notice("bill_due", demo.RESIDENTIAL_TOU, "due_reminder:2026-11-22:3")
    reply = await td(action_server_url, conv, meta)
    assert "已为您取消户号******4567的缴费到期提醒" in reply and "温馨提示" not in reply
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {demo.RESIDENTIAL_TOU: {"outage"}}


async def test_td_after_an_outage_notice_stops_outage_notices_and_explains(action_server_url,
                                                                         redis_url):
    conv = await subscribed(redis_url, demo.RESIDENTIAL_TOU)
    meta = notice("outage_notice", demo.RESIDENTIAL_TOU, "outage:JH00001:notice", outage_id="JH00001")
    reply = await td(action_server_url, conv, meta, "td")
    assert "已为您取消户号******4567的停电通知" in reply and "温馨提示：停电通知事关用电安全" in reply
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {demo.RESIDENTIAL_TOU: {"bill_due"}}


async def test_unsubscribing_everything_after_a_notice_still_means_everything(action_server_url,
                                                                            redis_url):
    conv = await subscribed(redis_url, demo.RESIDENTIAL_TOU)
    meta = notice("bill_due", demo.RESIDENTIAL_TOU, "due_reminder:2026-11-22:3")
    reply = await td(action_server_url, conv, meta, "退订所有通知")
    assert "您将不再收到提醒消息" in reply
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {}


async def test_td_without_a_notice_is_unchanged(action_server_url, redis_url):
    conv = await subscribed(redis_url, demo.RESIDENTIAL_TOU)
    reply = await td(action_server_url, conv, None)
    assert "缴费到期提醒、停电通知" in reply and "您将不再收到提醒消息" in reply


async def test_a_malformed_notice_is_no_notice(action_server_url, redis_url):
    conv = await subscribed(redis_url, demo.RESIDENTIAL_TOU)
    reply = await td(action_server_url, conv, {"kind": 5, "params": "x"})
    assert "缴费到期提醒、停电通知" in reply
