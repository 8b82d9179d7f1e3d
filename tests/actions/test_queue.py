"""Hall queues and remote ticket taking, through the real action server and reference backends.

The queue figures a reply states are compared with what the backend's queue API says at the
same moment; tickets taken by the action are read back from the backend by holder. Which halls
are open depends on the day and hour, so these tests run against backends whose clock stands
at a Saturday afternoon (tests/actions/conftest.py): some halls open, some closed, any day.
"""
from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from tests.support.actions import entity, run_action, slot_events, texts, user_message

BUSY_TEXT = "系统繁忙，请稍后再试。如有紧急情况，请拨打95598供电服务热线。"


@pytest.fixture
def backends_url(saturday_backends_url: str) -> str:
    return saturday_backends_url


@pytest.fixture
def action_server_url(saturday_action_server_url: str) -> str:
    return saturday_action_server_url


def sender() -> str:
    return f"web:test-queue-{uuid.uuid4().hex[:10]}"


async def backend(backends_url: str, method: str, path: str, json: Any = None, **params: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{backends_url}/queue{path}", params=params, json=json) as resp:
            return resp.status, await resp.json(content_type=None)


async def get(backends_url: str, path: str, **params: Any) -> Any:
    status, body = await backend(backends_url, "GET", path, **params)
    assert status == 200, (path, status, body)
    return body


async def open_hall(backends_url: str, business_code: str | None = None) -> dict:
    for hall in (await get(backends_url, "/halls"))["halls"]:
        if hall["open_now"] and (business_code is None or business_code in hall["business_types"]):
            return hall
    pytest.fail("no reference hall is open at the pinned time")


async def business_types(backends_url: str) -> dict[str, dict]:
    return {bt["code"]: bt for bt in (await get(backends_url, "/business-types"))["business_types"]}


def all_buttons(result: dict) -> list[dict]:
    return [b for r in result["responses"] for b in r.get("buttons") or []]


def ahead_text(position: int) -> str:
    """How a reply states a waiting ticket's position (the backend's position = people ahead)."""
    return f"前面还有{position}位" if position else "马上就到您了"


async def test_hall_queue_figures_equal_the_backend(action_server_url, backends_url):
    hall = await open_hall(backends_url)
    text = f"{hall['name']}现在排多少人"
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=sender(),
        latest_message=user_message(text, "queue_lookup", [entity("hall", hall["name"], text)]),
    )
    queue = await get(backends_url, f"/halls/{hall['hall_id']}/queue")
    reply = "\n".join(texts(result))
    assert queue["lines"], "an open hall should have queue lines"
    for line in queue["lines"]:
        row = next(r for r in reply.splitlines() if r.startswith(line["business_name"] + "："))
        assert f"等待{line['waiting']}人" in row
        if line["now_serving"]:
            assert f"正在办理{line['now_serving']}号" in row
        minutes = int(round(line["estimated_wait_minutes"]))
        assert (f"约{minutes}分钟" in row) if 0 < minutes < 60 else True
    assert slot_events(result)["hall"] == hall["name"]


async def test_one_business_type_and_online_suggestion(action_server_url, backends_url):
    types = await business_types(backends_url)
    online = next(bt for bt in types.values() if bt["online"])
    hall = await open_hall(backends_url, online["code"])
    text = f"{hall['name']}{online['name']}要等多久"
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=sender(),
        latest_message=user_message(text, "queue_lookup", [
            entity("hall", hall["name"], text), entity("business_type", online["name"], text),
        ]),
    )
    queue = await get(backends_url, f"/halls/{hall['hall_id']}/queue")
    (line,) = [each for each in queue["lines"] if each["business_type"] == online["code"]]
    reply = "\n".join(texts(result))
    assert f"{online['name']}：等待{line['waiting']}人" in reply
    assert "在线办理" in reply and online["online_channels"][0] in reply
    others = [bt["name"] for code, bt in types.items() if code != online["code"]]
    assert not any(f"{name}：等待" in reply for name in others)


async def test_hall_only_business_has_no_online_suggestion(action_server_url, backends_url):
    types = await business_types(backends_url)
    offline = next(bt for bt in types.values() if not bt["online"])
    hall = next(h for h in (await get(backends_url, "/halls"))["halls"]
                if offline["code"] in h["business_types"])
    text = f"{hall['name']}办{offline['name']}人多吗"
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=sender(),
        latest_message=user_message(text, "queue_lookup", [
            entity("hall", hall["name"], text), entity("business_type", offline["name"], text),
        ]),
    )
    reply = "\n".join(texts(result))
    assert "在线办理" not in reply
    if offline["hall_only_reason"]:
        assert offline["hall_only_reason"] in reply


async def test_overview_of_all_halls_without_a_hall(action_server_url, backends_url):
    halls = (await get(backends_url, "/halls"))["halls"]
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=sender(),
        latest_message=user_message("营业厅现在人多吗", "queue_lookup"),
    )
    reply = "\n".join(texts(result))
    for hall in halls[:8]:
        assert hall["name"] in reply
    payloads = [b["payload"] for b in all_buttons(result)]
    assert payloads and all(p.startswith("/queue_lookup{") for p in payloads)


async def unknown_hall(backends_url: str) -> str:
    """A hall name the queue backend does not know (checked against its halls, not assumed)."""
    halls = (await get(backends_url, "/halls"))["halls"]
    for name in ("青龙湾营业厅", "紫荆苑供电营业厅", "丰泽营业厅"):
        if not any(name[:2] in hall["name"] or hall["name"] in name for hall in halls):
            return name
    pytest.fail("every candidate hall name is known to the reference backend")


async def test_unknown_hall_is_named_back_honestly(action_server_url, backends_url):
    """A hall the backend does not know is said to be not found; the overview that follows is
    offered as the next step, never as that hall's queue."""
    name = await unknown_hall(backends_url)
    text = f"{name}现在排队的人多吗"
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=sender(),
        latest_message=user_message(text, "queue_lookup", [entity("hall", name, text)]),
    )
    replies = texts(result)
    assert replies[0].startswith(f"抱歉，没有找到“{name}”。")
    assert "各营业厅当前排队情况" in replies[1]
    assert "hall" not in slot_events(result)


async def test_unknown_hall_with_a_ticket_number_says_so_before_searching(action_server_url, backends_url):
    name = (await unknown_hall(backends_url)).removesuffix("营业厅")  # named without the suffix
    text = f"我在{name}取的Z999号排到哪了"
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=sender(),
        latest_message=user_message(text, "queue_lookup", [
            entity("hall", name, text), entity("ticket_number", "Z999", text)]),
    )
    replies = texts(result)
    assert replies[0] == f"抱歉，没有找到名为“{name}”的营业厅。已在所有营业厅中为您查找该票号。"
    assert "没有查到今天的Z999号" in replies[1]


async def test_own_remote_ticket_position(action_server_url, backends_url):
    hall = await open_hall(backends_url)
    code = hall["business_types"][0]
    conversation = sender()
    status, taken = await backend(
        backends_url, "POST", f"/halls/{hall['hall_id']}/tickets",
        json={"business_type": code, "holder": conversation},
    )
    assert status == 201, taken
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=conversation,
        latest_message=user_message("我的号排到哪了", "queue_lookup"),
    )
    now = await get(backends_url, f"/halls/{hall['hall_id']}/tickets/{taken['ticket_number']}")
    reply = "\n".join(texts(result))
    assert taken["ticket_number"] in reply and hall["name"] in reply
    assert ahead_text(now["position"]) in reply


async def test_ticket_number_entity_with_hall(action_server_url, backends_url):
    hall = await open_hall(backends_url)
    status, taken = await backend(
        backends_url, "POST", f"/halls/{hall['hall_id']}/tickets",
        json={"business_type": hall["business_types"][0], "holder": "web:someone-else"},
    )
    assert status == 201, taken
    number = taken["ticket_number"]
    text = f"我在{hall['name']}取的{number}还要多久"
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=sender(),
        latest_message=user_message(text, "queue_lookup", [
            entity("hall", hall["name"], text), entity("ticket_number", number, text),
        ]),
    )
    now = await get(backends_url, f"/halls/{hall['hall_id']}/tickets/{number}")
    assert ahead_text(now["position"]) in "\n".join(texts(result))


async def test_no_remote_ticket_offers_take_number(action_server_url):
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=sender(),
        latest_message=user_message("我取的号呢", "queue_lookup"),
    )
    assert "没有查到您今天在线取的号" in texts(result)[0]
    assert "/take_number" in [b["payload"] for b in all_buttons(result)]


# --- take_number -----------------------------------------------------------------------------

async def test_take_number_gives_ticket_position_and_wait(action_server_url, backends_url):
    types = await business_types(backends_url)
    online = next(bt for bt in types.values() if bt["online"])
    hall = await open_hall(backends_url, online["code"])
    conversation = sender()
    result = await run_action(
        action_server_url, "action_take_number", sender_id=conversation,
        slots={"hall": hall["name"], "business_type": online["name"]},
        latest_message=user_message("取号", "take_number"),
    )
    (ticket,) = (await get(backends_url, "/tickets", holder=conversation))["tickets"]
    reply = "\n".join(texts(result))
    assert ticket["ticket_number"] in reply and hall["name"] in reply
    assert ticket["business_type"] == online["code"]
    assert ahead_text(ticket["position"]) in reply
    assert "在线办理" in reply
    assert slot_events(result) == {"hall": None, "business_type": None}


async def test_form_validates_hall_and_business_type(action_server_url, backends_url):
    types = await business_types(backends_url)
    hall = await open_hall(backends_url)
    code = hall["business_types"][0]
    result = await run_action(
        action_server_url, "validate_take_number_form", sender_id=sender(),
        slots={"requested_slot": "hall", "hall": hall["name"]},
        latest_message=user_message(hall["name"], "inform", [entity("hall", hall["name"])]),
        events=[{"event": "slot", "name": "hall", "value": hall["name"]}],
        active_loop={"name": "take_number_form"},
    )
    assert slot_events(result)["hall"] == hall["name"]

    # the business type typed in everyday words, without an entity
    name = types[code]["name"]
    result = await run_action(
        action_server_url, "validate_take_number_form", sender_id=sender(),
        slots={"requested_slot": "business_type", "hall": hall["name"]},
        latest_message=user_message(f"我要办{name}", "inform"),
        active_loop={"name": "take_number_form"},
    )
    assert slot_events(result)["business_type"] == name

    result = await run_action(
        action_server_url, "validate_take_number_form", sender_id=sender(),
        slots={"requested_slot": "hall", "hall": "不存在的营业厅"},
        latest_message=user_message("不存在的营业厅", "inform", [entity("hall", "不存在的营业厅")]),
        events=[{"event": "slot", "name": "hall", "value": "不存在的营业厅"}],
        active_loop={"name": "take_number_form"},
    )
    assert slot_events(result)["hall"] is None
    assert texts(result) == ["抱歉，没有找到“不存在的营业厅”，请从下面的营业厅中选择。"]


async def test_questions_list_halls_and_business_types_from_backend(action_server_url, backends_url):
    halls = (await get(backends_url, "/halls"))["halls"]
    result = await run_action(action_server_url, "action_ask_take_number_form_hall", sender_id=sender())
    open_names = {h["name"] for h in halls if h["open_now"]}
    titles = {b["title"] for b in all_buttons(result)}
    assert titles == {n for n in open_names} or (not open_names and "不在营业时间" in texts(result)[0])

    hall = halls[0]
    types = await business_types(backends_url)
    result = await run_action(
        action_server_url, "action_ask_take_number_form_business_type", sender_id=sender(),
        slots={"hall": hall["name"]},
    )
    assert [b["title"] for b in all_buttons(result)] == [
        bt["name"] for code, bt in types.items() if code in hall["business_types"]
    ]


@pytest.mark.parametrize(
    "action", ["action_queue_lookup", "action_take_number", "validate_take_number_form"]
)
async def test_backend_down_answers_busy(action_server_url_backends_down, action):
    result = await run_action(
        action_server_url_backends_down, action, sender_id=sender(),
        slots={"hall": "东山营业厅", "business_type": "缴费", "requested_slot": "hall"},
        latest_message=user_message("东山营业厅排队", "queue_lookup"),
        events=[{"event": "slot", "name": "hall", "value": "东山营业厅"}],
        active_loop={"name": "take_number_form"},
    )
    assert texts(result)[-1] == BUSY_TEXT
    assert result["events"] == []


async def closed_hall(backends_url: str) -> dict:
    for hall in (await get(backends_url, "/halls"))["halls"]:
        if not hall["open_now"]:
            return hall
    pytest.fail("every reference hall is open at the pinned time")


async def test_closed_hall_is_refused_with_its_opening_hours(action_server_url, backends_url):
    hall = await closed_hall(backends_url)
    result = await run_action(
        action_server_url, "validate_take_number_form", sender_id=sender(),
        slots={"requested_slot": "hall", "hall": hall["name"]},
        latest_message=user_message(hall["name"], "inform", [entity("hall", hall["name"])]),
        events=[{"event": "slot", "name": "hall", "value": hall["name"]}],
        active_loop={"name": "take_number_form"},
    )
    assert slot_events(result)["hall"] is None
    assert hall["opening_hours"] in texts(result)[0]


async def test_taking_a_number_at_a_closed_hall_is_answered_politely(action_server_url, backends_url):
    hall = await closed_hall(backends_url)
    conversation = sender()
    types = await business_types(backends_url)
    result = await run_action(
        action_server_url, "action_take_number", sender_id=conversation,
        slots={"hall": hall["name"], "business_type": types[hall["business_types"][0]]["name"]},
        latest_message=user_message("取号", "take_number"),
    )
    reply = texts(result)[0]
    assert "不能取号" in reply and hall["opening_hours"] in reply
    assert (await get(backends_url, "/tickets", holder=conversation))["tickets"] == []


async def test_own_ticket_by_number_without_naming_the_hall(action_server_url, backends_url):
    hall = await open_hall(backends_url)
    conversation = sender()
    status, taken = await backend(
        backends_url, "POST", f"/halls/{hall['hall_id']}/tickets",
        json={"business_type": hall["business_types"][-1], "holder": conversation},
    )
    assert status == 201, taken
    number = taken["ticket_number"]
    text = f"{number}排到了吗"
    result = await run_action(
        action_server_url, "action_queue_lookup", sender_id=conversation,
        latest_message=user_message(text, "queue_lookup", [entity("ticket_number", number, text)]),
    )
    now = await get(backends_url, f"/halls/{hall['hall_id']}/tickets/{number}")
    reply = "\n".join(texts(result))
    assert hall["name"] in reply and ahead_text(now["position"]) in reply


async def test_business_type_the_hall_does_not_handle_is_refused(action_server_url, backends_url):
    types = await business_types(backends_url)
    for hall in (await get(backends_url, "/halls"))["halls"]:
        missing = [code for code in types if code not in hall["business_types"]]
        if missing:
            break
    else:
        pytest.fail("every reference hall handles every business type")
    name = types[missing[0]]["name"]
    result = await run_action(
        action_server_url, "validate_take_number_form", sender_id=sender(),
        slots={"requested_slot": "business_type", "hall": hall["name"], "business_type": name},
        latest_message=user_message(name, "inform", [entity("business_type", name)]),
        events=[{"event": "slot", "name": "business_type", "value": name}],
        active_loop={"name": "take_number_form"},
    )
    assert slot_events(result)["business_type"] is None
    assert f"{hall['name']}不办理{name}业务" in texts(result)[0]


async def test_taking_the_same_number_twice_keeps_one_ticket(action_server_url, backends_url):
    hall = await open_hall(backends_url)
    types = await business_types(backends_url)
    name = types[hall["business_types"][0]]["name"]
    conversation = sender()
    slots = {"hall": hall["name"], "business_type": name}
    first = await run_action(action_server_url, "action_take_number", sender_id=conversation,
                             slots=slots, latest_message=user_message("取号", "take_number"))
    second = await run_action(action_server_url, "action_take_number", sender_id=conversation,
                              slots=slots, latest_message=user_message("再取一个", "take_number"))
    (ticket,) = (await get(backends_url, "/tickets", holder=conversation))["tickets"]
    assert ticket["ticket_number"] in texts(first)[0]
    assert "无需重复取号" in texts(second)[0] and ticket["ticket_number"] in texts(second)[0]


async def test_hall_can_be_changed_while_the_business_type_is_asked(action_server_url, backends_url):
    halls = (await get(backends_url, "/halls"))["halls"]
    other = await open_hall(backends_url)
    first = next(h for h in halls if h["hall_id"] != other["hall_id"])
    result = await run_action(
        action_server_url, "validate_take_number_form", sender_id=sender(),
        slots={"requested_slot": "business_type", "hall": first["name"]},
        latest_message=user_message(f"换成{other['name']}吧", "inform"),
        active_loop={"name": "take_number_form"},
    )
    assert slot_events(result)["hall"] == other["name"]


@pytest.mark.parametrize("text", ["换成江宁区东山营业厅吧", "江宁区东山那个吧"])
async def test_a_hall_named_with_its_district_is_not_taken_for_another(action_server_url, text):
    # 江宁区江宁营业厅's distinctive part 江宁 is also in the district name the customer typed.
    result = await run_action(
        action_server_url, "validate_take_number_form", sender_id=sender(),
        slots={"requested_slot": "business_type", "hall": "鼓楼区中央门营业厅"},
        latest_message=user_message(text, "inform"),
        active_loop={"name": "take_number_form"},
    )
    assert slot_events(result)["hall"] == "江宁区东山营业厅"


async def test_business_type_question_names_the_chosen_hall(action_server_url, backends_url):
    hall = (await get(backends_url, "/halls"))["halls"][-1]
    result = await run_action(
        action_server_url, "action_ask_take_number_form_business_type", sender_id=sender(),
        slots={"hall": hall["name"]},
    )
    assert f"在{hall['name']}办理什么业务" in texts(result)[0]
