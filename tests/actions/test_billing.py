"""Bill queries through the real action server, reference backends and Redis.

Expected figures are read from the billing backend over HTTP first, so the tests follow the
seed data (bills of the last 12 months, relative to today) instead of repeating it.
"""
from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.actions.account_data import (
    ACCOUNTS,
    BUSY_TEXT,
    backend_get,
    bind,
    customer_store,
    sender,
    wrong_last4,
)
from tests.support.actions import entity, run_action, slot_events, texts, user_message

TZ = ZoneInfo("Asia/Shanghai")
CN_DIGITS = "零一二三四五六七八九"
CN_MONTHS = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二"]


def month_shift(months: int) -> tuple[int, int]:
    today = dt.datetime.now(TZ).date()
    index = today.year * 12 + today.month - 1 + months
    return index // 12, index % 12 + 1


def money(value) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.01'))}元"


def kwh(value) -> str:
    number = Decimal(str(value))
    return (f"{number.normalize():f}" if number == number.to_integral() else f"{number:.2f}") + "度"


async def ask(url: str, conv: str, text: str, entities: list | None = None,
              slots: dict | None = None) -> dict:
    return await run_action(url, "action_query_bill", sender_id=conv, slots=slots,
                            latest_message=user_message(text, "query_bill", entities))


async def bound_conversation(redis_url, index: int = 0) -> tuple[str, str]:
    account, _ = ACCOUNTS[index]
    conv = sender("bill")
    await bind(redis_url, conv, account)
    return conv, account


async def bills_of(backends_url: str, account: str) -> list[dict]:
    return (await backend_get(backends_url, f"/billing/accounts/{account}/bills",
                              limit=12))["bills"]


def assert_shows_bill(reply: str, bill: dict) -> None:
    year, month = bill["month"].split("-")
    assert f"{int(year)}年{int(month)}月" in reply
    assert f"用电量：{kwh(bill['kwh_total'])}" in reply
    assert f"电费金额：{money(bill['amount'])}" in reply
    assert f"缴费截止日期：{bill['due_date']}" in reply
    if bill["time_of_use"]:
        assert f"峰时段{kwh(bill['kwh_peak'])}" in reply
        assert f"谷时段{kwh(bill['kwh_valley'])}" in reply
    if len(bill["tiers"]) > 1 or bill["tier_reached"] > 1:
        assert f"已达第{'一二三'[bill['tier_reached'] - 1]}档" in reply
        for tier in bill["tiers"]:
            if tier["kwh"] > 0:
                assert kwh(tier["kwh"]) in reply
            if tier["kwh"] > 0 and tier["price"] > 0:
                assert money(tier["amount"]) in reply


# --- gating -------------------------------------------------------------------------------------

async def test_unbound_conversation_is_asked_to_bind(action_server_url):
    result = await ask(action_server_url, sender("bill"), "查电费")
    events = slot_events(result)
    assert events["needs_binding"] is True
    assert events["pending_request"] == "query_bill"
    assert "需要先验证您的户号" in texts(result)[0]


async def test_another_accounts_number_needs_its_own_verification(action_server_url,
                                                                  redis_url, backends_url):
    conv, _ = await bound_conversation(redis_url, 0)
    other, _ = ACCOUNTS[1]
    latest = (await bills_of(backends_url, other))[0]
    text = f"查一下{other}的电费"
    result = await ask(action_server_url, conv, text, [entity("account_number", other, text)])
    events = slot_events(result)
    assert events["needs_binding"] is True and events["account_number"] == other
    reply = "\n".join(texts(result))
    assert money(latest["amount"]) not in reply and kwh(latest["kwh_total"]) not in reply


async def test_resumed_after_binding_ignores_digits_that_are_no_account(action_server_url, redis_url,
                                                                       backends_url):
    """Right after verification the latest message is "尾号5678", which the NLU may tag as a
    (too short) 户号: the bill of the bound account is shown."""
    conv, account = await bound_conversation(redis_url)
    text = "尾号5678"
    result = await run_action(action_server_url, "action_query_bill", sender_id=conv,
                              latest_message=user_message(text, "inform",
                                                          [entity("account_number", "5678", text)]))
    assert slot_events(result)["needs_binding"] is False
    assert_shows_bill(texts(result)[0], (await bills_of(backends_url, account))[0])


# --- content ------------------------------------------------------------------------------------

async def test_latest_bill_matches_the_backend(action_server_url, redis_url, backends_url):
    conv, account = await bound_conversation(redis_url)
    bill = (await bills_of(backends_url, account))[0]
    balance = await backend_get(backends_url, f"/billing/accounts/{account}/balance")
    result = await ask(action_server_url, conv, "电费账单")
    reply = texts(result)[0]
    assert_shows_bill(reply, bill)
    if balance["arrears"] > 0:
        assert f"当前欠费：{money(balance['arrears'])}" in reply
    else:
        assert f"当前账户余额：{money(balance['balance'])}" in reply
    assert f"******{account[-4:]}" in reply and account not in reply
    assert slot_events(result)["bill_month"] == bill["month"]
    assert slot_events(result)["needs_binding"] is False
    titles = [b["title"] for b in result["responses"][0]["buttons"]]
    assert {"缴费方式", "订阅缴费提醒", "为什么这么贵"} <= set(titles)


async def test_every_account_kind_renders(action_server_url, redis_url, backends_url):
    """Residential with and without 峰谷, commercial: whatever the seed has."""
    accounts = ACCOUNTS
    for index in range(min(len(accounts), 8)):
        conv, account = await bound_conversation(redis_url, index)
        bills = await bills_of(backends_url, account)
        if not bills:
            continue
        assert_shows_bill(texts(await ask(action_server_url, conv, "查电费"))[0], bills[0])


@pytest.mark.parametrize("words", ["上个月", "上月"])
async def test_last_month(action_server_url, redis_url, backends_url, words):
    conv, account = await bound_conversation(redis_url)
    year, month = month_shift(-1)
    bill = await backend_get(backends_url, f"/billing/accounts/{account}/bills/{year:04d}-{month:02d}")
    text = f"{words}呢"
    result = await ask(action_server_url, conv, text,
                       [entity("month", "上个月" if words == "上月" else words, text)],
                       slots={"month": "上个月"})
    assert_shows_bill(texts(result)[0], bill)
    assert slot_events(result)["month"] is None  # used up: the next plain query shows the latest


async def test_named_months_in_every_spelling(action_server_url, redis_url, backends_url):
    conv, account = await bound_conversation(redis_url)
    year, month = month_shift(-3)
    bill = await backend_get(backends_url, f"/billing/accounts/{account}/bills/{year:04d}-{month:02d}")
    spellings = [
        f"{month}月",
        f"{CN_MONTHS[month - 1]}月",
        f"{year}年{month}月",
        "".join(CN_DIGITS[int(d)] for d in str(year)) + f"年{CN_MONTHS[month - 1]}月",
        f"{year}-{month:02d}",
    ]
    for spelling in spellings:
        result = await ask(action_server_url, conv, f"{spelling}的呢", slots={"month": spelling})
        assert_shows_bill(texts(result)[0], bill)


async def test_month_without_a_bill(action_server_url, redis_url):
    conv, account = await bound_conversation(redis_url)
    year, month = month_shift(-30)
    result = await ask(action_server_url, conv, "账单", slots={"month": f"{year}年{month}月"})
    reply = texts(result)[0]
    assert f"未查询到户号******{account[-4:]} {year}年{month}月的电费账单" in reply
    result = await ask(action_server_url, conv, "本月电费", slots={"month": "本月"})
    assert "尚未出账" in texts(result)[0] or "用电量" in texts(result)[0]


async def test_month_not_understood(action_server_url, redis_url):
    conv, _ = await bound_conversation(redis_url)
    result = await ask(action_server_url, conv, "今年的", slots={"month": "今年"})
    assert "具体的月份" in texts(result)[0]


# --- explanation --------------------------------------------------------------------------------

async def explained_bill_account(backends_url) -> tuple[int, str, dict]:
    """An account whose latest bill uses more than one tier and 峰谷 if the seed has one."""
    best = None
    for index, (account, _) in enumerate(ACCOUNTS):
        bills = await bills_of(backends_url, account)
        if not bills:
            continue
        score = (bills[0]["tier_reached"] > 1) + bool(bills[0]["time_of_use"])
        if best is None or score > best[0]:
            best = (score, index, account, bills[0])
        if score == 2:
            break
    assert best is not None, "no reference account has bills"
    return best[1], best[2], best[3]


async def test_why_so_expensive_explains_from_bill_data(action_server_url, redis_url,
                                                        backends_url):
    index, account, bill = await explained_bill_account(backends_url)
    conv, _ = await bound_conversation(redis_url, index)
    text = "为什么这么贵"
    result = await ask(action_server_url, conv, text, [entity("bill_aspect", text, text)])
    reply = texts(result)[0]
    assert money(bill["amount"]) in reply
    if bill["previous_month_kwh"] is not None:
        assert f"比上月（{kwh(bill['previous_month_kwh'])}）" in reply
        diff = Decimal(str(bill["kwh_total"])) - Decimal(str(bill["previous_month_kwh"]))
        if diff:
            assert kwh(abs(diff)) in reply
    if bill["tier_reached"] > 1:
        assert "阶梯电价" in reply
        if bill["time_of_use"]:  # 峰谷 bills list the tier surcharge itself
            extra = sum(Decimal(str(t["amount"])) for t in bill["tiers"] if t["tier"] > 1)
            assert f"多约{money(extra)}" in reply
    if bill["time_of_use"] and bill["kwh_total"]:
        share = (Decimal(str(bill["kwh_peak"])) * 100 / Decimal(str(bill["kwh_total"]))).quantize(
            Decimal("1"), rounding=ROUND_HALF_UP)
        assert f"占{share}%" in reply


async def test_explanation_without_entity_and_for_the_bill_shown_last(action_server_url,
                                                                      redis_url, backends_url):
    conv, account = await bound_conversation(redis_url)
    year, month = month_shift(-2)
    shown = f"{year:04d}-{month:02d}"
    bill = await backend_get(backends_url, f"/billing/accounts/{account}/bills/{shown}")
    result = await ask(action_server_url, conv, "怎么这么多钱啊", slots={"bill_month": shown})
    reply = texts(result)[0]
    assert f"{year}年{month}月的电费为{money(bill['amount'])}" in reply
    assert "具体分析如下" in reply


# --- failures -----------------------------------------------------------------------------------

async def test_backend_down_answers_busy(action_server_url_backends_down, redis_url):
    conv = sender("bill")
    await bind(redis_url, conv, "3201234567")
    result = await ask(action_server_url_backends_down, conv, "查电费")
    assert texts(result) == [BUSY_TEXT]
    assert result["events"] == []


# --- the whole conversation through Rasa (trained model) ----------------------------------------

async def say(rasa_url: str, conv: str, message: str) -> list[dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{rasa_url}/webhooks/rest/webhook",
                                json={"sender": conv, "message": message}) as response:
            assert response.status == 200
            return await response.json()


def joined(replies: list[dict]) -> str:
    return "\n".join(r.get("text") or "" for r in replies)


@pytest.mark.e2e
async def test_conversation_bind_then_bill_then_follow_ups(rasa_url, backends_url, redis_url):
    account, last4 = ACCOUNTS[0]
    conv = sender("e2e-bill")
    replies = joined(await say(rasa_url, conv, "查一下我家电费"))
    assert "需要先验证您的户号" in replies and "10位户号" in replies
    replies = joined(await say(rasa_url, conv, "３２０１２３４５６"))  # 9 digits
    assert "户号为10位数字" in replies
    replies = joined(await say(rasa_url, conv, account))
    assert f"请输入户号******{account[-4:]}登记的手机号码后4位" in replies
    replies = joined(await say(rasa_url, conv, wrong_last4(last4)))
    assert "还可以尝试4次" in replies
    replies = joined(await say(rasa_url, conv, f"尾号{last4}"))
    bill = (await bills_of(backends_url, account))[0]
    assert f"已为您绑定户号******{account[-4:]}" in replies
    assert_shows_bill(replies, bill)
    assert account not in replies

    year, month = month_shift(-1)
    last_month = await backend_get(
        backends_url, f"/billing/accounts/{account}/bills/{year:04d}-{month:02d}")
    assert_shows_bill(joined(await say(rasa_url, conv, "上个月呢")), last_month)
    replies = joined(await say(rasa_url, conv, "为什么这么贵"))
    assert f"{year}年{month}月的电费为{money(last_month['amount'])}" in replies
    replies = joined(await say(rasa_url, conv, "怎么交电费"))
    assert "网上国网App" in replies and "银行代扣" in replies


@pytest.mark.e2e
async def test_conversation_subscribe_and_unsubscribe(rasa_url, redis_url):
    account, last4 = ACCOUNTS[1]
    conv = sender("e2e-remind")
    await say(rasa_url, conv, "订阅停电通知")
    await say(rasa_url, conv, account)
    replies = joined(await say(rasa_url, conv, last4))
    assert "订阅成功" in replies and "停电通知" in replies
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {account: {"outage"}}
    replies = joined(await say(rasa_url, conv, "取消所有订阅"))
    assert "您将不再收到提醒消息" in replies
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {}


# --- month words, against fixed dates (the parser runs in the Rasa environment) ------------------

MONTH_CASES = [
    ("2026-11-23", "上个月", "2026-10"), ("2026-11-23", "上月", "2026-10"),
    ("2026-11-23", "本月", "2026-11"), ("2026-11-23", "这个月", "2026-11"),
    ("2026-11-23", "上上个月", "2026-09"), ("2026-11-23", "九月", "2026-09"),
    ("2026-11-23", "9月份的", "2026-09"), ("2026-11-23", "２０２６年９月", "2026-09"),
    ("2026-11-23", "二零二六年九月", "2026-09"), ("2026-11-23", "二〇二五年十二月", "2025-12"),
    ("2026-11-23", "12月", "2025-12"), ("2026-11-23", "十一月", "2026-11"),
    ("2026-11-23", "去年9月", "2025-09"), ("2026-11-23", "2026-09", "2026-09"),
    ("2026-01-05", "上个月", "2025-12"), ("2026-01-05", "12月", "2025-12"),
    ("2026-01-05", "上上个月", "2025-11"), ("2026-03-31", "2月", "2026-02"),
    # the NLU's normalisation (bot.components.normalization) and cn2an: same months either way
    ("2026-11-23", "十月份的电费", "2026-10"), ("2026-11-23", "二零二六年 十月", "2026-10"),
    ("2026-11-23", "2026年十一月", "2026-11"), ("2026-11-23", "11月", "2026-11"),
    ("2026-11-23", "二○二五年十二月", "2025-12"), ("2026-11-23", "十二月份", "2025-12"),
]


def test_month_words_relative_to_a_fixed_day():
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = (
        "import datetime as dt, json, sys\n"
        "from actions.billing import parse_month, MonthNotUnderstood\n"
        "out = []\n"
        "for day, words in json.load(sys.stdin):\n"
        "    try:\n"
        "        out.append(parse_month(words, dt.date.fromisoformat(day)))\n"
        "    except MonthNotUnderstood:\n"
        "        out.append(None)\n"
        "print(json.dumps(out))\n"
    )
    cases = MONTH_CASES + [("2026-11-23", w, None) for w in ("今年", "13月", "昨天", "十三月")]
    result = subprocess.run(
        [str(root / ".venv" / "rasa" / "bin" / "python"), "-c", script],
        input=json.dumps([[d, w] for d, w, _ in cases]), capture_output=True, text=True,
        cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got == [expected for _, _, expected in cases]
