"""Account binding with verification, through the real action server, backends and Redis."""
from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from integrations.customer_store import ACCOUNT, CONVERSATION, VerificationLimits
from tests.actions.account_data import (
    ACCOUNTS,
    BUSY_TEXT,
    backend_get,
    bind,
    customer_store,
    sender,
    unknown_account,
    wrong_last4,
)
from tests.support.actions import entity, run_action, slot_events, texts, user_message

FORM = {"name": "bind_account_form", "validate": True, "rejected": False}
LIMITS = VerificationLimits()  # the defaults, which the session's action server runs with
MAX_FAILED_VERIFICATIONS = LIMITS.conversation.max_count
ACCOUNT_MAX_FAILED_VERIFICATIONS = LIMITS.account.max_count
LOCK_SECONDS = LIMITS.conversation.lock_seconds


def form_slots(**slots):
    return {"requested_slot": "account_number", **slots}


async def validate(url: str, conv: str, slots: dict, text: str, intent: str = "inform",
                   entities: list | None = None, candidates: tuple[str, ...] = ()) -> dict:
    """Run the form validation as Rasa does: the slots just extracted from the customer's
    message (``candidates``) are the trailing slot events of the tracker."""
    events = [{"event": "user", "text": text}]
    events += [{"event": "slot", "name": name, "value": slots[name]} for name in candidates]
    return await run_action(
        url, "validate_bind_account_form", sender_id=conv, slots=slots, events=events,
        latest_message=user_message(text, intent, entities), active_loop=FORM,
    )


async def give_account(url: str, conv: str, account: str) -> dict:
    return await validate(url, conv, form_slots(account_number=account), account,
                          entities=[entity("account_number", account, account)],
                          candidates=("account_number",))


async def give_last4(url: str, conv: str, account: str, text: str) -> dict:
    return await validate(
        url, conv,
        {"requested_slot": "phone_last4", "account_number": account, "phone_last4": text}, text,
        candidates=("phone_last4",))


# --- starting -----------------------------------------------------------------------------------

async def test_start_binding_asks_for_verification(action_server_url):
    conv = sender("bind")
    result = await run_action(action_server_url, "action_start_binding", sender_id=conv,
                              slots={"account_number": "3200000001"},
                              latest_message=user_message("绑定户号", "bind_account"))
    events = slot_events(result)
    assert events["needs_binding"] is True
    assert events["pending_request"] == "none"
    # a 户号 left in the slot from earlier must not skip the question
    assert events["account_number"] is None
    # binding_locked is left alone (the rule resuming verification after a lock relies on it)
    assert "binding_locked" not in events
    assert "手机号码后4位" in texts(result)[0]


async def test_start_binding_takes_the_number_typed_with_it(action_server_url):
    account, _ = ACCOUNTS[0]
    text = f"绑定户号{account}"
    result = await run_action(
        action_server_url, "action_start_binding", sender_id=sender("bind"),
        latest_message=user_message(text, "bind_account", [entity("account_number", account, text)]))
    assert slot_events(result)["account_number"] == account


# --- verification -------------------------------------------------------------------------------

async def test_right_last4_binds_the_account(action_server_url, redis_url):
    account, last4 = ACCOUNTS[0]
    conv = sender("bind")
    first = await give_account(action_server_url, conv, account)
    assert slot_events(first)["account_number"] == account
    assert texts(first) == []  # nothing about the account before verification
    result = await give_last4(action_server_url, conv, account, last4)
    events = slot_events(result)
    assert events["binding_outcome"] == "verified"
    assert events["phone_last4"] == "****"
    assert events["binding_locked"] is False
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) == account


async def test_last4_in_full_width_or_chinese_digits_or_the_whole_phone(action_server_url,
                                                                        redis_url):
    account, last4 = ACCOUNTS[1]
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in last4)
    chinese = "".join("零一二三四五六七八九"[int(c)] for c in last4)
    for text in (f"手机尾号{full_width}", chinese, f"138{'0' * 4}{last4}"):
        conv = sender("bind")
        result = await give_last4(action_server_url, conv, account, text)
        assert slot_events(result)["binding_outcome"] == "verified", text
        async with customer_store(redis_url) as store:
            assert await store.get_binding(conv) == account


@pytest.mark.parametrize("order", [("account_number", "phone_last4"),
                                   ("phone_last4", "account_number")])
async def test_phone_digits_misread_as_a_short_account_keep_the_account(action_server_url, redis_url,
                                                                        order):
    """The NLU may tag "尾号5678" as an account_number entity; the 户号 being verified stays."""
    account, last4 = ACCOUNTS[0]
    conv = sender("bind")
    text = f"尾号{last4}"
    candidates = {"account_number": last4, "phone_last4": text}
    events = [{"event": "slot", "name": "account_number", "value": account},
              {"event": "user", "text": text}]
    events += [{"event": "slot", "name": name, "value": candidates[name]} for name in order]
    result = await run_action(
        action_server_url, "validate_bind_account_form", sender_id=conv,
        slots={"requested_slot": "phone_last4", "account_number": last4, "phone_last4": text},
        latest_message=user_message(text, "inform", [entity("account_number", last4, text)]),
        events=events, active_loop=FORM)
    result_slots = slot_events(result)
    assert result_slots["account_number"] == account
    assert result_slots["binding_outcome"] == "verified"
    assert texts(result) == []
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) == account


async def test_wrong_last4_tells_attempts_left_and_binds_nothing(action_server_url, redis_url):
    account, last4 = ACCOUNTS[0]
    conv = sender("bind")
    result = await give_last4(action_server_url, conv, account, wrong_last4(last4))
    assert slot_events(result)["phone_last4"] is None
    reply = texts(result)[0]
    assert "验证未通过" in reply and f"还可以尝试{MAX_FAILED_VERIFICATIONS - 1}次" in reply
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) is None
        assert await store.attempts_counted(CONVERSATION, conv) == 1


async def test_five_failures_lock_binding_for_30_minutes(action_server_url, redis_url):
    account, last4 = ACCOUNTS[0]
    conv = sender("bind")
    for attempt in range(1, MAX_FAILED_VERIFICATIONS):
        result = await give_last4(action_server_url, conv, account, wrong_last4(last4))
        assert f"还可以尝试{MAX_FAILED_VERIFICATIONS - attempt}次" in texts(result)[0]
    result = await give_last4(action_server_url, conv, account, wrong_last4(last4))
    events = slot_events(result)
    assert events["binding_outcome"] == "locked"
    assert events["binding_locked"] is True  # the rules answer digits typed later with the lock
    assert events["requested_slot"] is None  # the form ends at once
    assert "锁定" in texts(result)[0] and "30分钟" in texts(result)[0]
    # Even the right answer is refused now.
    result = await give_last4(action_server_url, conv, account, last4)
    assert slot_events(result)["binding_outcome"] == "locked"
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) is None
        scope, seconds = await store.locked_scope([(CONVERSATION, conv)])
        assert 0 < seconds <= LOCK_SECONDS
    # Starting again, asking for a bill, or typing 4 digits again (inform: the rule sends it to
    # action_start_binding while binding_locked holds) says it is locked and starts no form.
    for action, text, intent in (("action_start_binding", "绑定户号", "bind_account"),
                                 ("action_query_bill", "查电费", "query_bill"),
                                 ("action_start_binding", "1234", "inform")):
        result = await run_action(action_server_url, action, sender_id=conv,
                                  slots={"binding_locked": True},
                                  latest_message=user_message(text, intent))
        assert slot_events(result)["needs_binding"] is False
        assert slot_events(result)["binding_locked"] is True
        assert "锁定" in texts(result)[0]
        assert "感谢您的咨询" not in texts(result)[0]


async def test_guessing_one_account_from_many_conversations_locks_that_account(
        action_server_url, redis_url):
    account, last4 = ACCOUNTS[3]
    for _ in range(ACCOUNT_MAX_FAILED_VERIFICATIONS):  # each guess from a fresh web session
        await give_last4(action_server_url, sender("guess"), account, wrong_last4(last4))
    conv = sender("owner")
    result = await give_last4(action_server_url, conv, account, last4)
    assert slot_events(result)["binding_outcome"] == "locked"
    assert "该户号的验证已暂时锁定" in texts(result)[0]
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) is None
        assert await store.locked_scope([(ACCOUNT, account)])
    client = aioredis.Redis.from_url(redis_url)
    try:  # other tests verify this account
        key = f"pd:verify:{{verify}}:{ACCOUNT}:{account}"
        await client.delete(key, f"{key}:strikes")
    finally:
        await client.aclose()


async def test_unknown_account_reveals_nothing_and_counts(action_server_url, backends_url, redis_url):
    conv = sender("bind")
    account = await unknown_account(backends_url)
    result = await give_account(action_server_url, conv, account)
    assert slot_events(result)["account_number"] is None
    assert texts(result) == [f"未查询到该户号，请核对后重新输入。您还可以尝试{MAX_FAILED_VERIFICATIONS - 1}次。"]
    async with customer_store(redis_url) as store:
        assert await store.attempts_counted(CONVERSATION, conv) == 1


async def test_wrong_length_account_asks_for_ten_digits(action_server_url, redis_url):
    conv = sender("bind")
    # No account_number entity (the NLU extracts 10 digits only): the form picks the digits up.
    result = await validate(action_server_url, conv, form_slots(), "320123456")
    assert slot_events(result)["account_number"] is None
    assert "户号为10位数字" in texts(result)[0] and "9位" in texts(result)[0]
    result = await validate(action_server_url, conv, form_slots(), "户号是３２０１２３４５６７８９")
    assert "12位" in texts(result)[0]
    async with customer_store(redis_url) as store:
        assert await store.attempts_counted(CONVERSATION, conv) == 0


async def test_somebody_elses_account_shows_nothing_before_verification(action_server_url,
                                                                        backends_url):
    account, last4 = ACCOUNTS[2]
    info = await backend_get(backends_url, f"/billing/accounts/{account}")
    conv = sender("bind")
    replies = texts(await give_account(action_server_url, conv, account))
    replies += texts(await give_last4(action_server_url, conv, account, wrong_last4(last4)))
    joined = "\n".join(replies)
    assert info["name"] not in joined and f"{info['name'][0]}*" not in joined
    assert info["address"] not in joined and account not in joined


async def test_asking_for_another_account_while_asked_for_the_digits(action_server_url, redis_url):
    account, _ = ACCOUNTS[0]
    other, _ = ACCOUNTS[1]
    conv = sender("bind")
    slots = {"requested_slot": "phone_last4", "account_number": account, "phone_last4": "换个户号"}
    result = await validate(action_server_url, conv, slots, "换个户号", intent="bind_account",
                            candidates=("phone_last4",))
    events = slot_events(result)
    assert events["account_number"] is None and events["phone_last4"] is None
    assert texts(result) == ["好的，请重新输入您要绑定的户号。"]
    text = f"换成{other}"
    slots = {"requested_slot": "phone_last4", "account_number": other, "phone_last4": text}
    result = await validate(action_server_url, conv, slots, text, intent="bind_account",
                            entities=[entity("account_number", other, text)],
                            candidates=("account_number", "phone_last4"))
    assert slot_events(result)["account_number"] == other
    async with customer_store(redis_url) as store:
        assert await store.attempts_counted(CONVERSATION, conv) == 0


# --- finishing ----------------------------------------------------------------------------------

async def test_finish_confirms_with_masked_number_and_name(action_server_url, backends_url,
                                                          redis_url):
    account, _ = ACCOUNTS[0]
    info = await backend_get(backends_url, f"/billing/accounts/{account}")
    conv = sender("bind")
    await bind(redis_url, conv, account)
    result = await run_action(action_server_url, "action_finish_binding", sender_id=conv,
                              slots={"binding_outcome": "verified", "pending_request": "query_bill"})
    reply = texts(result)[0]
    assert f"******{account[-4:]}" in reply and account not in reply
    masked_name = info["name"][0] + "*" * (len(info["name"]) - 1)
    assert masked_name in reply and info["name"] not in reply
    events = slot_events(result)
    assert events["pending_request"] == "query_bill"
    assert events["binding_outcome"] is None and events["phone_last4"] is None


async def test_finish_masks_a_company_name_without_its_length(action_server_url, backends_url,
                                                             redis_url):
    account, _ = ACCOUNTS[3]  # enterprise
    info = await backend_get(backends_url, f"/billing/accounts/{account}")
    assert len(info["name"]) > 4
    conv = sender("bind")
    await bind(redis_url, conv, account)
    result = await run_action(action_server_url, "action_finish_binding", sender_id=conv,
                              slots={"binding_outcome": "verified", "pending_request": "none"})
    reply = texts(result)[0]
    assert f"（户名：{info['name'][0]}***）" in reply and info["name"][1:3] not in reply
    titles = [b["title"] for b in result["responses"][0]["buttons"]]
    assert titles == ["查电费", "缴费方式", "订阅缴费提醒"]
    assert slot_events(result)["pending_request"] == "none"


async def test_finish_after_lock_resumes_nothing(action_server_url):
    result = await run_action(action_server_url, "action_finish_binding", sender_id=sender("bind"),
                              slots={"binding_outcome": "locked", "pending_request": "query_bill"})
    assert slot_events(result)["pending_request"] == "none"
    assert texts(result) == []


# --- switching and unbinding -------------------------------------------------------------------

async def test_switching_account_keeps_the_old_one_until_the_new_one_is_verified(
        action_server_url, redis_url):
    (old, _), (new, new_last4) = ACCOUNTS[:2]
    conv = sender("bind")
    await bind(redis_url, conv, old)
    text = f"换成{new}这个户号"
    result = await run_action(
        action_server_url, "action_start_binding", sender_id=conv,
        latest_message=user_message(text, "bind_account", [entity("account_number", new, text)]))
    assert f"******{old[-4:]}" in texts(result)[0] and old not in texts(result)[0]
    assert slot_events(result)["needs_binding"] is True
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) == old
    await give_last4(action_server_url, conv, new, new_last4)
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) == new


async def test_binding_the_same_account_again_is_not_needed(action_server_url, redis_url):
    account, _ = ACCOUNTS[0]
    conv = sender("bind")
    await bind(redis_url, conv, account)
    text = f"绑定{account}"
    result = await run_action(
        action_server_url, "action_start_binding", sender_id=conv,
        latest_message=user_message(text, "bind_account", [entity("account_number", account, text)]))
    assert slot_events(result)["needs_binding"] is False
    assert "无需重复绑定" in texts(result)[0]


async def test_unbind(action_server_url, redis_url):
    account, _ = ACCOUNTS[0]
    conv = sender("bind")
    await bind(redis_url, conv, account)
    async with customer_store(redis_url) as store:
        await store.subscribe_reminder(conv, account)
    result = await run_action(action_server_url, "action_start_binding", sender_id=conv,
                              latest_message=user_message("解绑户号", "bind_account"))
    assert slot_events(result)["needs_binding"] is False
    assert f"已为您解除户号******{account[-4:]}的绑定" in texts(result)[0]
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) is None
        assert await store.subscriptions_of(conv) == {}
    result = await run_action(action_server_url, "action_start_binding", sender_id=conv,
                              latest_message=user_message("解绑户号", "bind_account"))
    assert "没有绑定户号" in texts(result)[0]


# --- backends down ------------------------------------------------------------------------------

async def test_backend_down_answers_busy(action_server_url_backends_down, redis_url):
    conv = sender("bind")
    result = await give_account(action_server_url_backends_down, conv, "3201234567")
    assert texts(result) == [BUSY_TEXT]
    result = await give_last4(action_server_url_backends_down, conv, "3201234567", "5678")
    assert texts(result) == [BUSY_TEXT]
    async with customer_store(redis_url) as store:
        assert await store.get_binding(conv) is None
