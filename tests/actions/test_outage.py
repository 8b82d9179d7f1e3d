"""Outage queries and fault reports, through the real action server and reference backends.

Every expectation is read from the reference backends over HTTP first (which areas have an
outage, what its reason and restoration time are), so the tests follow the seed data instead
of repeating it.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import redis.asyncio as aioredis

from actions.settings import Settings
from integrations.customer_store import CustomerStore
from backends import demo_accounts
from tests.support.actions import entity, run_action, slot_events, texts, user_message

BUSY_TEXT = "系统繁忙，请稍后再试。如有紧急情况，请拨打95598供电服务热线。"
TZ = ZoneInfo("Asia/Shanghai")
COMMITMENTS = Settings.load().commitments


def sender() -> str:
    return f"web:test-outage-{uuid.uuid4().hex[:10]}"


async def backend_get(backends_url: str, path: str, **params: Any) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{backends_url}{path}", params=params) as response:
            assert response.status == 200, (path, response.status, await response.text())
            return await response.json()


async def active_outages(backends_url: str, **params: Any) -> list[dict]:
    body = await backend_get(backends_url, "/outage/outages", status="active", **params)
    return [o for o in body["outages"] if o["status"] in ("scheduled", "ongoing")]


async def bind(redis_url: str, conversation: str, account: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await CustomerStore(client).bind(conversation, account)
    finally:
        await client.aclose()


async def tickets_of(backends_url: str, conversation: str) -> list[dict]:
    body = await backend_get(backends_url, "/tickets/tickets", conversation_id=conversation)
    return body["tickets"]


def hhmm(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).astimezone(TZ).strftime("%H:%M")


async def area_with_ongoing_outage(backends_url: str) -> tuple[str, dict]:
    """A community (or street) name with an ongoing outage in it, and that outage."""
    for outage in await active_outages(backends_url):
        if outage["status"] == "ongoing":
            name = outage.get("community") or outage.get("street") or outage["district"]
            return name, outage
    pytest.fail("the reference backends have no ongoing outage to test with")


async def area_without_outage(backends_url: str) -> dict:
    """An area (district/street/community) that no active outage reaches."""
    outages = await active_outages(backends_url)
    for area in (await backend_get(backends_url, "/outage/areas"))["areas"]:
        if not area.get("community"):
            continue
        if not await active_outages(backends_url, area=area["community"]) and not any(
            o["district"] == area["district"] and o.get("street") in (None, "", area["street"])
            and not o.get("community")
            for o in outages
        ):
            return area
    pytest.fail("every reference area has an outage; cannot test the no-outage path")


async def account_in_outage_area(backends_url: str, ongoing: bool = False) -> tuple[str, list[dict]]:
    """A demo 户号 whose area has an active (or ongoing) outage, and those outages."""
    for account in (demo_accounts.OVERDUE, demo_accounts.RESIDENTIAL_TOU):
        found = await active_outages(backends_url, account_number=account)
        if ongoing:
            found = [o for o in found if o["status"] == "ongoing"]
        if found:
            return account, found
    pytest.fail("no demo account lives where an outage is active")


# --- query_outage ----------------------------------------------------------------------------

async def test_outage_found_by_named_area(action_server_url, backends_url):
    name, _ = await area_with_ongoing_outage(backends_url)
    expected = await active_outages(backends_url, area=name)
    text = f"{name}停电了吗，啥时候来电"
    result = await run_action(
        action_server_url, "action_query_outage", sender_id=sender(),
        latest_message=user_message(text, "query_outage", [entity("area", name, text)]),
    )
    reply = "\n".join(texts(result))
    assert f"有{len(expected)}条停电信息" in reply
    for outage in expected[:5]:
        assert outage["reason"] in reply
        assert hhmm(outage["end_time"]) in reply
    assert "正在停电" in reply and "预计恢复供电" in reply
    # the area is used up: the next "停电吗" must not silently answer for this place again
    assert slot_events(result) == {"area": None}


async def test_planned_outage_shows_its_time_window(action_server_url, backends_url):
    planned = [o for o in await active_outages(backends_url) if o["status"] == "scheduled"]
    assert planned, "the reference data announces planned outages"
    outage = planned[0]
    text = f"{outage['community']}什么时候停电"
    result = await run_action(
        action_server_url, "action_query_outage", sender_id=sender(),
        latest_message=user_message(text, "query_outage", [entity("area", outage["community"], text)]),
    )
    start = dt.datetime.fromisoformat(outage["start_time"]).astimezone(TZ)
    reply = "\n".join(texts(result))
    assert "计划检修停电" in reply and outage["reason"] in reply
    assert f"{start.month}月{start.day}日" in reply
    assert f"{hhmm(outage['start_time'])}至" in reply and hhmm(outage["end_time"]) in reply


async def test_outage_for_bound_account_when_no_area_named(action_server_url, backends_url, redis_url):
    account, expected = await account_in_outage_area(backends_url)
    conversation = sender()
    await bind(redis_url, conversation, account)
    result = await run_action(
        action_server_url, "action_query_outage", sender_id=conversation,
        latest_message=user_message("我家那边停电了吗", "query_outage"),
    )
    reply = "\n".join(texts(result))
    assert f"******{account[-4:]}" in reply and account not in reply
    for outage in expected[:5]:
        assert outage["reason"] in reply


async def test_no_outage_says_so_and_offers_repair(action_server_url, backends_url):
    area = await area_without_outage(backends_url)
    name = area["community"]
    text = f"{name}有停电吗"
    result = await run_action(
        action_server_url, "action_query_outage", sender_id=sender(),
        latest_message=user_message(text, "query_outage", [entity("area", name, text)]),
    )
    reply = "\n".join(texts(result))
    assert "没有正在进行的停电" in reply
    assert f"未来{COMMITMENTS.planned_outage_notice_days}天内" in reply
    payloads = [b["payload"] for r in result["responses"] for b in r.get("buttons") or []]
    assert "/report_fault" in payloads


async def unknown_place(backends_url: str) -> str:
    """A compound the outage backend does not know: none of its areas is named in it and the
    backend finds no outage for it (checked over HTTP, not assumed)."""
    areas = (await backend_get(backends_url, "/outage/areas"))["areas"]
    for name in ("青龙湾花园", "紫荆苑小区", "丰泽家园"):
        known = {n for a in areas for n in (a["district"], a["street"], a["community"]) if n}
        if not any(n[:2] in name for n in known) and not await active_outages(backends_url, area=name):
            return name
    pytest.fail("every candidate place name is known to the reference backend")


async def test_unknown_place_is_answered_honestly(action_server_url, backends_url):
    """A place the backend does not know is named back with "没有查到", never "no outage there"."""
    name = await unknown_place(backends_url)
    text = f"{name}停电了吗"
    result = await run_action(
        action_server_url, "action_query_outage", sender_id=sender(),
        latest_message=user_message(text, "query_outage", [entity("area", name, text)]),
    )
    reply = "\n".join(texts(result))
    assert f"没有查到“{name}”的停电信息" in reply
    assert "没有正在进行的停电" not in reply
    assert "街道" in reply and "95598" in reply  # the next steps: a known area, the hotline
    payloads = [b["payload"] for r in result["responses"] for b in r.get("buttons") or []]
    assert payloads == ["/bind_account", "/report_fault"]
    assert slot_events(result) == {"area": None}


async def test_unknown_place_is_not_answered_with_the_bound_accounts_area(action_server_url, backends_url,
                                                                          redis_url):
    account, expected = await account_in_outage_area(backends_url)
    conversation = sender()
    await bind(redis_url, conversation, account)
    name = await unknown_place(backends_url)
    text = f"{name}那边停电了吗"
    result = await run_action(
        action_server_url, "action_query_outage", sender_id=conversation,
        latest_message=user_message(text, "query_outage", [entity("area", name, text)]),
    )
    reply = "\n".join(texts(result))
    assert f"没有查到“{name}”的停电信息" in reply
    assert not any(outage["reason"] in reply for outage in expected)


async def test_one_character_area_is_no_place(action_server_url, backends_url):
    """A bare suffix tagged as the area (路 of 某某路) names nothing: the area is asked for."""
    text = "路那边停电了吗"
    result = await run_action(
        action_server_url, "action_query_outage", sender_id=sender(),
        latest_message=user_message(text, "query_outage", [entity("area", "路", text)]),
    )
    assert [r.get("response") for r in result["responses"]] == ["utter_ask_query_outage_form_area"]


async def test_form_asks_for_area_only_without_area_or_binding(action_server_url, redis_url, backends_url):
    unbound = sender()
    result = await run_action(
        action_server_url, "validate_query_outage_form", sender_id=unbound,
        latest_message=user_message("停电了吗", "query_outage"),
        active_loop={"name": "query_outage_form"},
    )
    # the form keeps area required, so Rasa asks for it (no early end of the form)
    assert slot_events(result).get("requested_slot", "area") == "area"

    bound = sender()
    await bind(redis_url, bound, demo_accounts.COMMERCIAL)
    result = await run_action(
        action_server_url, "validate_query_outage_form", sender_id=bound,
        latest_message=user_message("停电了吗", "query_outage"),
        active_loop={"name": "query_outage_form"},
    )
    assert slot_events(result)["requested_slot"] is None


async def test_area_typed_without_entity_is_understood(action_server_url, backends_url):
    area = (await backend_get(backends_url, "/outage/areas"))["areas"][0]
    result = await run_action(
        action_server_url, "validate_query_outage_form", sender_id=sender(),
        slots={"requested_slot": "area"},
        latest_message=user_message(f"就是{area['street']}那边", "inform"),
        active_loop={"name": "query_outage_form"},
    )
    assert slot_events(result)["area"] == area["street"]


async def test_area_question_lists_districts_from_backend(action_server_url, backends_url):
    districts = {a["district"] for a in (await backend_get(backends_url, "/outage/areas"))["areas"]}
    result = await run_action(
        action_server_url, "action_ask_query_outage_form_area", sender_id=sender(),
    )
    titles = {b["title"] for r in result["responses"] for b in r.get("buttons") or []}
    assert titles and titles <= districts


# --- report_fault ----------------------------------------------------------------------------

async def test_fault_covered_by_known_outage_opens_no_ticket(action_server_url, backends_url):
    name, outage = await area_with_ongoing_outage(backends_url)
    conversation = sender()
    text = f"我住{name}，家里突然没电了，帮我报修"
    result = await run_action(
        action_server_url, "action_check_fault_outage", sender_id=conversation,
        latest_message=user_message(text, "report_fault", [entity("area", name, text)]),
    )
    assert slot_events(result)["fault_route"] == "covered"
    reply = "\n".join(texts(result))
    assert outage["reason"] in reply and "无需重复报修" in reply
    assert hhmm(outage["end_time"]) in reply
    assert await tickets_of(backends_url, conversation) == []


async def test_fault_at_bound_account_inside_ongoing_outage_is_covered(
    action_server_url, backends_url, redis_url
):
    account, ongoing = await account_in_outage_area(backends_url, ongoing=True)
    conversation = sender()
    await bind(redis_url, conversation, account)
    result = await run_action(
        action_server_url, "action_check_fault_outage", sender_id=conversation,
        latest_message=user_message("家里没电了", "report_fault"),
    )
    assert slot_events(result)["fault_route"] == "covered"
    reply = "\n".join(texts(result))
    assert all(o["reason"] in reply for o in ongoing[:5])
    assert await tickets_of(backends_url, conversation) == []


async def test_fault_without_outage_opens_ticket_with_severity_and_promise(action_server_url, backends_url):
    area = await area_without_outage(backends_url)
    conversation = sender()
    text = f"{area['community']}整栋楼都没电了，其他楼有电"
    check = await run_action(
        action_server_url, "action_check_fault_outage", sender_id=conversation,
        latest_message=user_message(text, "report_fault", [entity("area", area["community"], text)]),
    )
    slots = slot_events(check)
    assert slots["fault_route"] == "form"
    assert slots["fault_severity"] == "high"
    assert slots["fault_description"] == text
    assert slots["fault_outage_checked"] is True

    address = f"{area['district']}{area['street']}{area['community']}8栋"
    before = dt.datetime.now(TZ)
    result = await run_action(
        action_server_url, "action_submit_fault_report", sender_id=conversation,
        slots={**slots, "fault_address": address, "phone": "13912345678"},
        latest_message=user_message("13912345678", "inform", [entity("phone", "13912345678")]),
    )
    after = dt.datetime.now(TZ)
    tickets = await tickets_of(backends_url, conversation)
    assert len(tickets) == 1
    ticket = tickets[0]
    assert ticket["kind"] == "repair" and ticket["severity"] == "high"
    zone = "rural" if any(k in address for k in ("村", "镇", "乡")) else "urban"
    minutes = COMMITMENTS.repair_arrival_minutes[zone]
    promised = dt.datetime.fromisoformat(ticket["promised_by"])
    assert before + dt.timedelta(minutes=minutes, seconds=-2) <= promised
    assert promised <= after + dt.timedelta(minutes=minutes, seconds=2)
    reply = "\n".join(texts(result))
    assert ticket["ticket_id"] in reply
    assert f"{minutes}分钟内到达" in reply and promised.astimezone(TZ).strftime("%H:%M") in reply
    assert "*******5678" in reply and "13912345678" not in reply
    assert slot_events(result)["fault_route"] is None


async def test_rural_address_gets_the_rural_promise(action_server_url, backends_url):
    conversation = sender()
    result = await run_action(
        action_server_url, "action_submit_fault_report", sender_id=conversation,
        slots={
            "fault_description": "就我家没电，邻居家有电",
            "fault_address": "湖熟街道和平村三组12号",
            "phone": "15851234567",
            "fault_severity": "normal",
            "fault_outage_checked": True,
        },
        latest_message=user_message("15851234567", "inform"),
    )
    (ticket,) = await tickets_of(backends_url, conversation)
    minutes = COMMITMENTS.repair_arrival_minutes["rural"]
    created = dt.datetime.fromisoformat(ticket["created_at"])
    promised = dt.datetime.fromisoformat(ticket["promised_by"])
    assert abs((promised - created).total_seconds() - minutes * 60) < 60
    assert ticket["severity"] == "normal"
    assert f"农村地区抢修人员{minutes}分钟内到达" in "\n".join(texts(result))


async def test_safety_hazard_gets_safety_advice_first_and_urgent_ticket(action_server_url, backends_url):
    name, _ = await area_with_ongoing_outage(backends_url)
    conversation = sender()
    text = f"{name}楼下电线断了掉在地上，还在冒火花"
    check = await run_action(
        action_server_url, "action_check_fault_outage", sender_id=conversation,
        latest_message=user_message(text, "report_fault", [entity("area", name, text)]),
    )
    first = texts(check)[0]
    for words in ("远离", "不要触碰", "安全距离", "拉闸", "95598"):
        assert words in first, words
    slots = slot_events(check)
    # a hazard is ticketed even inside a known outage
    assert slots["fault_route"] == "form" and slots["fault_severity"] == "urgent"

    result = await run_action(
        action_server_url, "action_submit_fault_report", sender_id=conversation,
        slots={**slots, "fault_address": f"{name}12栋门口", "phone": "13812345678"},
        latest_message=user_message("13812345678", "inform"),
    )
    (ticket,) = await tickets_of(backends_url, conversation)
    assert ticket["severity"] == "urgent"
    assert ticket["ticket_id"] in "\n".join(texts(result))


async def test_hazard_described_in_the_form_gets_safety_advice_at_once(action_server_url):
    result = await run_action(
        action_server_url, "validate_report_fault_form", sender_id=sender(),
        slots={"requested_slot": "fault_description", "fault_description": "插座冒烟了，有烧焦味"},
        latest_message=user_message("插座冒烟了，有烧焦味", "inform"),
        events=[{"event": "slot", "name": "fault_description", "value": "插座冒烟了，有烧焦味"}],
        active_loop={"name": "report_fault_form"},
    )
    assert "95598" in texts(result)[0] and "远离" in texts(result)[0]
    assert slot_events(result)["fault_severity"] == "urgent"


async def test_tripped_breaker_gets_self_help(action_server_url, backends_url):
    area = await area_without_outage(backends_url)
    text = f"{area['community']}我家跳闸了，推不上去"
    result = await run_action(
        action_server_url, "action_check_fault_outage", sender_id=sender(),
        latest_message=user_message(text, "report_fault", [entity("area", area["community"], text)]),
    )
    assert any("漏电保护器" in t for t in texts(result))
    assert slot_events(result)["fault_severity"] == "normal"


async def test_phone_in_full_width_digits_is_taken(action_server_url):
    result = await run_action(
        action_server_url, "validate_report_fault_form", sender_id=sender(),
        slots={"requested_slot": "phone", "fault_description": "没电", "fault_address": "东山街道1号"},
        latest_message=user_message("打我电话１３９５１２３４５６７", "inform"),
        active_loop={"name": "report_fault_form"},
    )
    assert slot_events(result)["phone"] == "13951234567"


# --- failures --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "action", ["action_query_outage", "action_check_fault_outage", "action_submit_fault_report"]
)
async def test_backend_down_answers_busy(action_server_url_backends_down, action):
    text = "东山街道停电了吗"
    result = await run_action(
        action_server_url_backends_down, action, sender_id=sender(),
        latest_message=user_message(text, "query_outage", [entity("area", "东山街道", text)]),
    )
    assert texts(result)[-1] == BUSY_TEXT
    assert result["events"] == []


async def test_form_start_after_the_check_does_not_complain_about_reset_slots(action_server_url):
    # action_check_fault_outage resets the form's slots; those trailing SlotSet(None) events
    # reach the validation action as "candidates" and must not produce error messages.
    result = await run_action(
        action_server_url, "validate_report_fault_form", sender_id=sender(),
        latest_message=user_message("我要报修", "report_fault"),
        events=[{"event": "slot", "name": n, "value": None}
                for n in ("fault_description", "fault_address", "phone")],
        active_loop={"name": "report_fault_form"},
    )
    assert texts(result) == []
