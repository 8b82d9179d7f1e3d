"""Application progress through the real action server, applications backend and Redis.

Which accounts have applications is read from the session's backends SQLite file (the seed);
every expectation about an application (stages, manager, dates) is read over HTTP, and time
limits are computed here from the same settings and chinese_calendar helper.
"""
from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from actions.settings import Settings, add_working_days
from tests.actions.account_data import ACCOUNTS, BUSY_TEXT, backend_get, bind
from tests.support.actions import entity, run_action, slot_events, texts, user_message

TZ = ZoneInfo("Asia/Shanghai")
COMMITMENTS = Settings.load().commitments
NOT_YOURS = "未查询到您名下的该申请"
TIME_LIMITED = ("新装", "增容")


def sender() -> str:
    return f"web:test-application-{uuid.uuid4().hex[:10]}"


def accounts_with_applications(stack) -> list[str]:
    path = stack.run_dir / "backends.sqlite3"
    assert path.exists(), "start the backends (backends_url fixture) first"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT DISTINCT account_number FROM applications ORDER BY account_number"
        ).fetchall()
    finally:
        db.close()
    assert len(rows) >= 2, "the seed should have applications on several accounts"
    return [r[0] for r in rows]


async def applications_of(backends_url: str, account: str) -> list[dict[str, Any]]:
    body = await backend_get(backends_url, "/applications/applications", account_number=account)
    return body["applications"]


async def all_applications(backends_url: str, stack) -> list[dict[str, Any]]:
    found = []
    for account in accounts_with_applications(stack):
        found.extend(await applications_of(backends_url, account))
    return found


def deadline(application: dict[str, Any]) -> dt.datetime | None:
    days = COMMITMENTS.connection_working_days.get(application["customer_type"])
    if application["business_type"] not in TIME_LIMITED or not days:
        return None
    submitted = dt.datetime.fromisoformat(application["submitted_at"]).astimezone(TZ)
    return add_working_days(submitted, days)


async def ask(url: str, conversation: str, text: str, number: str | None = None) -> dict:
    entities = [entity("application_number", number, text)] if number and number in text else []
    return await run_action(url, "action_query_application", sender_id=conversation,
                            latest_message=user_message(text, "query_application", entities))


async def test_application_stage_manager_and_time_limit(action_server_url, backends_url, redis_url, stack):
    applications = await all_applications(backends_url, stack)
    limited = [a for a in applications if deadline(a) is not None]
    assert limited, "the seed should have a 新装/增容 application with a time limit"
    now = dt.datetime.now(TZ)
    for application in applications:
        conversation = sender()
        await bind(redis_url, conversation, application["account_number"])
        number = application["application_number"]
        result = await ask(action_server_url, conversation, f"帮我查下{number}办到哪了", number)
        reply = "\n".join(texts(result))
        slots = slot_events(result)
        assert slots["needs_binding"] is False and slots["application_number"] == number
        assert number in reply and application["business_type"] in reply
        assert application["account_number"] not in reply
        for stage in application["stages"]:
            assert stage["name"] in reply
        if application["status"] == "in_progress":
            assert f"当前环节：{application['current_stage']}" in reply
            if application.get("manager"):
                # staff contact: name and office phone in full (see actions/applications.py)
                assert application["manager"]["name"] in reply
                assert application["manager"]["phone"] in reply
        limit = deadline(application)
        if limit is None or application["status"] == "cancelled":
            assert "办理时限" not in reply
            continue
        days = COMMITMENTS.connection_working_days[application["customer_type"]]
        assert f"{days}个工作日" in reply
        overdue = application["status"] == "in_progress" and now > limit
        assert ("已超期" in reply) == overdue, (number, limit, reply)
        if application["status"] == "in_progress":
            assert f"{limit.month}月{limit.day}日" in reply


async def test_bound_account_without_a_number_lists_its_applications(
    action_server_url, backends_url, redis_url, stack
):
    account = accounts_with_applications(stack)[0]
    expected = await applications_of(backends_url, account)
    conversation = sender()
    await bind(redis_url, conversation, account)
    result = await ask(action_server_url, conversation, "我的申请办到哪一步了")
    reply = "\n".join(texts(result))
    assert f"共有{len(expected)}笔业务申请" in reply
    for application in expected[:5]:
        assert application["application_number"] in reply
    assert f"******{account[-4:]}" in reply and account not in reply


async def test_bound_account_without_applications_is_told_so(action_server_url, redis_url, stack):
    with_applications = set(accounts_with_applications(stack))
    account = next(a for a, _ in ACCOUNTS if a not in with_applications)
    conversation = sender()
    await bind(redis_url, conversation, account)
    result = await ask(action_server_url, conversation, "查申请进度")
    assert "暂无业务申请记录" in texts(result)[0]


async def test_no_binding_means_verification_first_and_nothing_shown(
    action_server_url, backends_url, stack
):
    application = (await all_applications(backends_url, stack))[0]
    number = application["application_number"]
    result = await ask(action_server_url, sender(), f"{number}进度", number)
    slots = slot_events(result)
    assert slots["needs_binding"] is True
    assert slots["pending_request"] == "query_application"
    assert slots["application_number"] == number  # resumed after verification
    reply = "\n".join(texts(result))
    assert application["current_stage"] not in reply
    if application.get("manager"):
        assert application["manager"]["name"] not in reply


async def test_query_resumes_after_verification_with_the_remembered_number(
    action_server_url, backends_url, redis_url, stack
):
    application = (await all_applications(backends_url, stack))[0]
    conversation = sender()
    await bind(redis_url, conversation, application["account_number"])
    # the latest message is the phone last-4 answer of the binding form
    result = await run_action(
        action_server_url, "action_query_application", sender_id=conversation,
        slots={"application_number": application["application_number"]},
        latest_message=user_message("5678", "inform"),
    )
    reply = "\n".join(texts(result))
    assert application["application_number"] in reply
    assert "共有" not in reply


async def test_someone_elses_application_reveals_nothing(action_server_url, backends_url, redis_url, stack):
    owner, other = accounts_with_applications(stack)[:2]
    application = (await applications_of(backends_url, owner))[0]
    number = application["application_number"]
    conversation = sender()
    await bind(redis_url, conversation, other)
    result = await ask(action_server_url, conversation, f"查{number}", number)
    reply = "\n".join(texts(result))
    assert NOT_YOURS in reply
    assert application["current_stage"] not in reply and application["business_type"] not in reply

    unknown = "YK" + ("9" * 10)
    result = await ask(action_server_url, conversation, f"查{unknown}", unknown)
    assert NOT_YOURS in texts(result)[0]


async def test_backend_down_is_a_polite_busy_reply(action_server_url_backends_down, redis_url, stack,
                                                    backends_url):
    conversation = sender()
    await bind(redis_url, conversation, accounts_with_applications(stack)[0])
    result = await ask(action_server_url_backends_down, conversation, "查申请进度")
    assert texts(result) == [BUSY_TEXT]
    assert result["events"] == []


@pytest.mark.parametrize("text", ["我的投诉TS20261123000045进度", "TS20261123000045现在什么状态"])
async def test_complaint_ticket_asked_as_an_application_gets_the_ticket_answer(action_server_url, text):
    result = await ask(action_server_url, sender(), text)
    assert "未查询到您名下的该工单" in texts(result)[0]
