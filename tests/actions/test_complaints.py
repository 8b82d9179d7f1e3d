"""Complaints and their follow-up, through the real action server, tickets backend and Redis.

Expectations come from the tickets backend over HTTP (what was stored, its status and history)
and from the same service-commitment settings the action server loads.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from actions.settings import Settings, add_working_days
from tests.actions.account_data import ACCOUNTS, BUSY_TEXT, bind
from tests.support.actions import entity, run_action, slot_events, texts, user_message

TZ = ZoneInfo("Asia/Shanghai")
COMMITMENTS = Settings.load().commitments
NOT_YOURS = "未查询到您名下的该工单"
FORM = {"name": "complaint_form", "validate": True, "rejected": False}
# What the customer is told for each ticket status (the contract of actions/complaints.py).
STATUS_LABELS = {
    "received": "已受理，等待处理",
    "dispatched": "已派发至责任部门",
    "processing": "正在处理",
    "resolved": "已处理完毕",
    "closed": "已办结",
}
HISTORY_LABELS = {
    "received": "受理", "dispatched": "派单", "processing": "处理中", "resolved": "处理完毕",
    "closed": "办结",
}


def sender() -> str:
    return f"web:test-complaint-{uuid.uuid4().hex[:10]}"


async def get_ticket(backends_url: str, ticket_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{backends_url}/tickets/tickets/{ticket_id}") as response:
            assert response.status == 200, (ticket_id, response.status, await response.text())
            return await response.json()


def ticket_id_in(reply: str) -> str:
    match = re.search(r"TS\d{10,16}", reply)
    assert match, reply
    return match.group(0)


def now() -> dt.datetime:
    return dt.datetime.now(TZ).replace(microsecond=0)


async def start(url: str, conversation: str, text: str, entities=None) -> dict:
    return await run_action(url, "action_start_complaint", sender_id=conversation,
                            latest_message=user_message(text, "complain", entities))


async def submit(url: str, conversation: str, **slots: Any) -> dict:
    return await run_action(url, "action_submit_complaint", sender_id=conversation, slots=slots,
                            latest_message=user_message("13912345678", "inform"))


async def validate(url: str, conversation: str, slots: dict, text: str, intent: str = "inform",
                   entities=None) -> dict:
    """Run the form validation as Rasa does: the slot the form extracted from this message
    (the requested one) is the last event of the tracker."""
    message = user_message(text, intent, entities)
    requested = slots["requested_slot"]
    events = [
        {"event": "user", "text": text, "parse_data": message},
        {"event": "slot", "name": requested, "value": slots.get(requested)},
    ]
    return await run_action(url, "validate_complaint_form", sender_id=conversation, slots=slots,
                            latest_message=message, events=events, active_loop=FORM)


async def file_complaint(url: str, conversation: str, description: str, category: str,
                         contact: str = "13912345678", severity: str | None = None) -> str:
    result = await submit(url, conversation, complaint_description=description,
                          complaint_category=category, complaint_contact=contact,
                          complaint_severity=severity)
    return ticket_id_in("\n".join(texts(result)))


# --- a new complaint -----------------------------------------------------------------------------

async def test_angry_complaint_gets_an_apology_first_and_keeps_what_was_said(action_server_url):
    text = "又停电了！！！一个星期停三次，你们供电公司是干什么吃的"
    result = await start(action_server_url, sender(), text)
    replies = texts(result)
    assert replies[0].startswith("非常抱歉"), replies
    slots = slot_events(result)
    assert slots["complaint_route"] == "form"
    assert slots["complaint_description"] == text
    assert slots["complaint_category"] == "停电频繁"
    assert slots["complaint_severity"] == "high"


async def test_bare_complaint_starts_the_form_without_guessing(action_server_url):
    result = await start(action_server_url, sender(), "我要投诉")
    slots = slot_events(result)
    assert slots["complaint_route"] == "form"
    assert slots["complaint_description"] is None and slots["complaint_category"] is None
    assert slots["complaint_severity"] == "normal"
    assert not texts(result)[0].startswith("非常抱歉")


async def test_phone_in_the_first_message_is_kept_as_contact(action_server_url):
    text = "我要投诉抢修超时，我电话18951234567，尽快给我回电"
    result = await start(action_server_url, sender(), text,
                         [entity("phone", "18951234567", text)])
    assert slot_events(result)["complaint_contact"] == "18951234567"


async def test_ticket_has_severity_and_promised_time_from_the_commitments(
    action_server_url, backends_url
):
    conversation = sender()
    description = "营业厅工作人员态度很差，我问两句就吼我"
    before = now()
    result = await submit(action_server_url, conversation, complaint_description=description,
                          complaint_category="服务态度", complaint_contact="13912345678",
                          complaint_severity="normal")
    after = now()
    reply = "\n".join(texts(result))
    ticket_id = ticket_id_in(reply)
    assert slot_events(result)["complaint_ticket"] == ticket_id

    ticket = await get_ticket(backends_url, ticket_id)
    assert ticket["kind"] == "complaint"
    assert ticket["category"] == "服务态度"
    assert ticket["description"] == description
    assert ticket["severity"] == "normal"
    assert ticket["conversation_id"] == conversation
    days = COMMITMENTS.complaint_ack_working_days
    promised = dt.datetime.fromisoformat(ticket["promised_by"]).astimezone(TZ)
    assert add_working_days(before, days) <= promised <= add_working_days(after, days)
    assert f"{days}个工作日内" in reply
    assert f"{promised.month}月{promised.day}日" in reply and f"{promised:%H:%M}" in reply
    assert "*******5678" in reply and "13912345678" not in reply


async def test_severity_grading(action_server_url, backends_url):
    cases = [
        ("这个月停了五次电了，还让不让人过日子", "停电频繁", "high"),
        ("再不给我解决我就找记者曝光你们", "其他", "high"),
        ("你们这服务简直垃圾，一群废物", "服务态度", "high"),
        ("家里老人用的制氧机停电后用不了了，到现在都没来电", "抢修超时", "urgent"),
        ("电费比上个月多了一百块，想核实一下", "电费争议", "normal"),
        ("建议营业厅周末也开放", "其他", "low"),
    ]
    for description, category, expected in cases:
        conversation = sender()
        ticket_id = await file_complaint(action_server_url, conversation, description, category)
        ticket = await get_ticket(backends_url, ticket_id)
        assert ticket["severity"] == expected, (description, ticket["severity"])


async def test_urgent_complaint_repeats_the_safety_advice(action_server_url):
    result = await submit(action_server_url, sender(),
                          complaint_description="电线掉在地上还在冒火花，报了也没人管",
                          complaint_category="抢修超时", complaint_contact="13912345678",
                          complaint_severity="urgent")
    reply = "\n".join(texts(result))
    assert "95598" in reply and "远离" in reply


async def test_contact_on_file_for_a_bound_account(action_server_url, backends_url, redis_url):
    account, _ = ACCOUNTS[0]
    conversation = sender()
    await bind(redis_url, conversation, account)

    asked = await run_action(action_server_url, "action_ask_complaint_form_complaint_contact",
                             sender_id=conversation, active_loop=FORM)
    question = texts(asked)[0]
    assert f"******{account[-4:]}" in question and account not in question
    assert [b["payload"] for b in asked["responses"][0]["buttons"]] == ["/affirm", "/deny"]
    assert slot_events(asked)["complaint_contact_offered"] is True

    accepted = await validate(action_server_url, conversation,
                              {"requested_slot": "complaint_contact", "complaint_contact": "on_file"},
                              "/affirm", intent="affirm")
    assert slot_events(accepted)["complaint_contact"] == "on_file"

    result = await submit(action_server_url, conversation, complaint_description="抄表员态度很凶",
                          complaint_category="服务态度", complaint_contact="on_file",
                          complaint_severity="normal")
    reply = "\n".join(texts(result))
    ticket = await get_ticket(backends_url, ticket_id_in(reply))
    assert ticket["account_number"] == account
    assert ticket.get("contact_phone") in (None, "")
    assert "登记的手机号" in reply and account not in reply


async def test_unbound_conversation_cannot_use_a_phone_on_file(action_server_url):
    conversation = sender()
    asked = await run_action(action_server_url, "action_ask_complaint_form_complaint_contact",
                             sender_id=conversation, active_loop=FORM)
    assert [r.get("response") for r in asked["responses"]] == ["utter_ask_complaint_form_complaint_contact"]
    assert slot_events(asked)["complaint_contact_offered"] is False
    rejected = await validate(action_server_url, conversation,
                              {"requested_slot": "complaint_contact", "complaint_contact": "on_file"},
                              "/affirm", intent="affirm")
    assert slot_events(rejected)["complaint_contact"] is None
    assert "没有绑定户号" in texts(rejected)[0]


async def test_a_no_to_the_phone_on_file_asks_for_another_number(action_server_url, redis_url):
    """"需要使用这个号码吗？" is a yes/no question: "不用了" declines the offer (the form goes on
    and asks for another number without offering it again), not the complaint."""
    account, _ = ACCOUNTS[0]
    conversation = sender()
    await bind(redis_url, conversation, account)
    slots = {"requested_slot": "complaint_contact", "complaint_contact_offered": True,
             "complaint_description": "抄表员态度很凶", "complaint_category": "服务态度"}
    message = user_message("不用了谢谢", "deny")
    # Nothing was extracted by Rasa from a deny: no slot event after the message.
    declined = await run_action(action_server_url, "validate_complaint_form", sender_id=conversation,
                                slots=slots, latest_message=message, active_loop=FORM,
                                events=[{"event": "user", "text": "不用了谢谢", "parse_data": message}])
    validated = slot_events(declined)
    assert "complaint_contact" in validated and validated["complaint_contact"] is None
    assert validated["complaint_contact_offered"] is False
    assert texts(declined) == []

    asked = await run_action(action_server_url, "action_ask_complaint_form_complaint_contact",
                             sender_id=conversation, active_loop=FORM, latest_message=message,
                             slots={**slots, "complaint_contact_offered": False})
    question = texts(asked)[0]
    assert "手机号码" in question and "需要使用这个号码吗" not in question
    assert slot_events(asked)["complaint_contact_offered"] is False
    assert not asked["responses"][0].get("buttons")


async def test_a_no_to_the_plain_contact_question_extracts_nothing(action_server_url):
    """Without the offer a no is not an answer: nothing is extracted, so the form rejects and
    the rule cancelling the complaint applies."""
    conversation = sender()
    message = user_message("不用了", "deny")
    result = await run_action(action_server_url, "validate_complaint_form", sender_id=conversation,
                              slots={"requested_slot": "complaint_contact", "complaint_contact_offered": False,
                                     "complaint_description": "x", "complaint_category": "其他"},
                              latest_message=message, active_loop=FORM,
                              events=[{"event": "user", "text": "不用了", "parse_data": message}])
    assert "complaint_contact" not in slot_events(result)


async def test_form_validation_of_category_and_contact(action_server_url):
    conversation = sender()
    picked = await validate(action_server_url, conversation,
                            {"requested_slot": "complaint_category", "complaint_category": "电压质量",
                             "complaint_description": "晚上灯很暗"},
                            "电压质量")
    assert slot_events(picked)["complaint_category"] == "电压质量"

    unclear = await validate(action_server_url, conversation,
                             {"requested_slot": "complaint_category", "complaint_category": "不知道",
                              "complaint_description": "晚上灯很暗"},
                             "不知道")
    assert slot_events(unclear)["complaint_category"] is None

    full_width = await validate(action_server_url, conversation,
                                {"requested_slot": "complaint_contact",
                                 "complaint_contact": "电话１３９ １２３４ ５６７８",
                                 "complaint_description": "x", "complaint_category": "其他"},
                                "电话１３９ １２３４ ５６７８")
    assert slot_events(full_width)["complaint_contact"] == "13912345678"

    wrong = await validate(action_server_url, conversation,
                           {"requested_slot": "complaint_contact", "complaint_contact": "12345",
                            "complaint_description": "x", "complaint_category": "其他"},
                           "12345")
    assert slot_events(wrong)["complaint_contact"] is None


async def test_description_in_the_form_is_graded_and_categorised(action_server_url):
    text = "排了两个小时队，窗口的人一直玩手机，气死我了！！"
    result = await validate(action_server_url, sender(),
                            {"requested_slot": "complaint_description", "complaint_description": text,
                             "complaint_severity": "normal"},
                            text)
    slots = slot_events(result)
    assert slots["complaint_description"] == text
    assert slots["complaint_severity"] == "high"
    assert slots["complaint_category"] == "服务态度"
    assert texts(result)[0].startswith("非常抱歉")


# --- follow-up ---------------------------------------------------------------------------------

async def test_status_by_ticket_number_for_the_conversation_that_opened_it(
    action_server_url, backends_url
):
    conversation = sender()
    ticket_id = await file_complaint(action_server_url, conversation, "电压太低空调开不了", "电压质量")
    ticket = await get_ticket(backends_url, ticket_id)
    text = f"我的投诉{ticket_id}处理得怎么样了"
    result = await start(action_server_url, conversation, text,
                         [entity("complaint_ticket", ticket_id, text)])
    reply = "\n".join(texts(result))
    assert slot_events(result)["complaint_route"] == "status"
    assert ticket_id in reply and "电压质量" in reply
    assert STATUS_LABELS[ticket["status"]] in reply
    for event in ticket["history"]:
        at = dt.datetime.fromisoformat(event["at"]).astimezone(TZ)
        assert f"{at:%H:%M}【{HISTORY_LABELS[event['status']]}】" in reply
        if event.get("note"):
            assert event["note"] in reply


async def test_status_without_a_number_lists_this_conversations_complaints(action_server_url):
    conversation = sender()
    first = await file_complaint(action_server_url, conversation, "抄表员态度很差", "服务态度")
    second = await file_complaint(action_server_url, conversation, "电费多收了两百", "电费争议")
    result = await start(action_server_url, conversation, "我的投诉有结果了吗")
    reply = "\n".join(texts(result))
    assert slot_events(result)["complaint_route"] == "status"
    assert reply.index(second) < reply.index(first)  # newest first

    nothing = await start(action_server_url, sender(), "投诉进度查询")
    assert "没有查到" in texts(nothing)[0]


async def test_others_learn_nothing_about_a_ticket(action_server_url):
    owner = sender()
    ticket_id = await file_complaint(action_server_url, owner, "收费员多收钱还不开票", "电费争议")
    for stranger_text in (f"{ticket_id}这个投诉有结果了吗", f"查一下{ticket_id.lower()}的进度"):
        result = await start(action_server_url, sender(), stranger_text)
        reply = "\n".join(texts(result))
        assert NOT_YOURS in reply and ticket_id not in reply and "电费争议" not in reply

    unknown = ticket_id[:-4] + ("9999" if not ticket_id.endswith("9999") else "9998")
    result = await start(action_server_url, sender(), f"{unknown}怎么样了")
    assert NOT_YOURS in texts(result)[0]


async def test_owner_of_the_bound_account_sees_the_ticket(action_server_url, redis_url):
    account, _ = ACCOUNTS[1]
    opener = sender()
    await bind(redis_url, opener, account)
    ticket_id = await file_complaint(action_server_url, opener, "施工队把门口挖坏了没人管", "其他",
                                     contact="on_file")
    other_channel = f"wechat:test-{uuid.uuid4().hex[:10]}"
    await bind(redis_url, other_channel, account)
    result = await start(action_server_url, other_channel, f"投诉单{ticket_id}进度")
    assert ticket_id in texts(result)[0]

    someone_else = sender()
    await bind(redis_url, someone_else, ACCOUNTS[2][0])
    result = await start(action_server_url, someone_else, f"投诉单{ticket_id}进度")
    assert NOT_YOURS in texts(result)[0]


# --- backends down -----------------------------------------------------------------------------

async def test_backend_down_is_a_polite_busy_reply(action_server_url_backends_down):
    result = await submit(action_server_url_backends_down, sender(), complaint_description="态度差",
                          complaint_category="服务态度", complaint_contact="13912345678",
                          complaint_severity="normal")
    assert texts(result) == [BUSY_TEXT]
    assert result["events"] == []

    result = await start(action_server_url_backends_down, sender(), "TS20261123000045处理得怎么样了")
    assert texts(result) == [BUSY_TEXT]


async def test_progress_words_alone_do_not_make_a_follow_up(action_server_url):
    result = await start(action_server_url, sender(), "申请新装的进度太慢了，一个月都没人来装表，我要投诉")
    slots = slot_events(result)
    assert slots["complaint_route"] == "form"
    assert slots["complaint_category"] == "业务办理慢"


async def test_status_past_the_promised_time_says_so_and_offers_a_person(action_server_url, backends_url):
    conversation = sender()
    promised = (now() - dt.timedelta(days=3)).isoformat(timespec="seconds")
    body = {"kind": "complaint", "category": "服务态度", "description": "抄表员态度差",
            "severity": "normal", "contact_phone": "13912345678", "account_number": None,
            "address": None, "area": None, "conversation_id": conversation,
            "promised_by": promised}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{backends_url}/tickets/tickets", json=body) as response:
            assert response.status == 201, await response.text()
            ticket = await response.json()
    result = await start(action_server_url, conversation, f"{ticket['ticket_id']}进度怎么样")
    reply = texts(result)[0]
    assert ticket["status"] == "received"  # a new ticket waits for its first contact
    assert "已超时" in reply and "95598" in reply
    assert [b["payload"] for b in result["responses"][0]["buttons"]] == ["/request_human"]

    fresh = await file_complaint(action_server_url, conversation, "营业厅空调坏了没人修", "其他")
    result = await start(action_server_url, conversation, f"{fresh}进度怎么样")
    assert "已超时" not in texts(result)[0]
