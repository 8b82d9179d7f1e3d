"""Reminder (un)subscription through the real action server; subscriptions checked in Redis."""
from __future__ import annotations

from tests.actions.account_data import bind, customer_store, sender
from tests.support.actions import entity, run_action, slot_events, texts, user_message

ACCOUNT = "3201234567"
OTHER = "3207654321"


async def subscribe(url: str, conv: str, text: str, intent: str = "subscribe_reminder",
                    slots: dict | None = None, entities: list | None = None) -> dict:
    return await run_action(url, "action_subscribe_reminder", sender_id=conv, slots=slots,
                            latest_message=user_message(text, intent, entities))


async def unsubscribe(url: str, conv: str, text: str, entities: list | None = None) -> dict:
    return await run_action(url, "action_unsubscribe_reminder", sender_id=conv,
                            latest_message=user_message(text, "unsubscribe_reminder", entities))


async def test_subscribing_needs_a_bound_account(action_server_url, redis_url):
    conv = sender("remind")
    result = await subscribe(action_server_url, conv, "有停电记得通知我")
    events = slot_events(result)
    assert events["needs_binding"] is True
    assert events["pending_request"] == "subscribe_reminder"
    assert events["reminder_kinds"] == ["outage"]
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {}


async def test_subscribe_both_kinds_persisted_per_sender_and_account(action_server_url, redis_url):
    conv = sender("remind")
    await bind(redis_url, conv, ACCOUNT)
    result = await subscribe(action_server_url, conv, "订阅提醒")
    reply = texts(result)[0]
    assert "订阅成功" in reply and "缴费到期提醒、停电通知" in reply
    assert "******4567" in reply and ACCOUNT not in reply
    assert slot_events(result)["needs_binding"] is False
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {ACCOUNT: {"bill_due", "outage"}}
        assert conv in await store.subscribers_of(ACCOUNT, "bill_due")
        assert conv in await store.subscribers_of(ACCOUNT, "outage")


async def test_subscribe_only_the_kind_named(action_server_url, redis_url):
    conv = sender("remind")
    await bind(redis_url, conv, ACCOUNT)
    await subscribe(action_server_url, conv, "开通缴费提醒")
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {ACCOUNT: {"bill_due"}}


async def test_subscription_resumes_after_binding_with_the_remembered_kinds(action_server_url,
                                                                          redis_url):
    conv = sender("remind")
    await bind(redis_url, conv, ACCOUNT)
    # The latest message is the phone last-4 the form just verified.
    result = await subscribe(action_server_url, conv, "5678", intent="inform",
                             slots={"reminder_kinds": ["outage"]})
    assert "停电通知" in texts(result)[0]
    assert slot_events(result)["reminder_kinds"] is None
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {ACCOUNT: {"outage"}}


async def test_subscribing_another_account_needs_its_verification(action_server_url, redis_url):
    conv = sender("remind")
    await bind(redis_url, conv, ACCOUNT)
    text = f"给户号{OTHER}开通停电提醒"
    result = await subscribe(action_server_url, conv, text,
                             entities=[entity("account_number", OTHER, text)])
    assert slot_events(result)["needs_binding"] is True
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {}


async def test_unsubscribe_one_kind_keeps_the_other(action_server_url, redis_url):
    conv = sender("remind")
    async with customer_store(redis_url) as store:
        await store.subscribe_reminder(conv, ACCOUNT)
    result = await unsubscribe(action_server_url, conv, "电费提醒关掉，停电的留着")
    reply = texts(result)[0]
    assert "已为您取消户号******4567的缴费到期提醒" in reply
    assert "您仍订阅着：户号******4567：停电通知" in reply
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {ACCOUNT: {"outage"}}
        assert conv not in await store.subscribers_of(ACCOUNT, "bill_due")


async def test_unsubscribe_all(action_server_url, redis_url):
    conv = sender("remind")
    async with customer_store(redis_url) as store:
        await store.subscribe_reminder(conv, ACCOUNT)
        await store.subscribe_reminder(conv, OTHER, kinds=["bill_due"])
    result = await unsubscribe(action_server_url, conv, "TD")
    assert "您将不再收到提醒消息" in texts(result)[0]
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {}
        assert conv not in await store.subscribers_of(OTHER, "bill_due")


async def test_unsubscribe_one_account(action_server_url, redis_url):
    conv = sender("remind")
    async with customer_store(redis_url) as store:
        await store.subscribe_reminder(conv, ACCOUNT)
        await store.subscribe_reminder(conv, OTHER)
    text = f"取消户号{OTHER}的提醒"
    await unsubscribe(action_server_url, conv, text, [entity("account_number", OTHER, text)])
    async with customer_store(redis_url) as store:
        assert await store.subscriptions_of(conv) == {ACCOUNT: {"bill_due", "outage"}}


async def test_unsubscribe_with_nothing_subscribed(action_server_url):
    result = await unsubscribe(action_server_url, sender("remind"), "取消订阅")
    assert "没有订阅任何提醒" in texts(result)[0]


async def test_reminders_work_while_backends_are_down(action_server_url_backends_down, redis_url):
    """Subscriptions live in Redis only: a billing outage must not block an opt-out."""
    conv = sender("remind")
    await bind(redis_url, conv, ACCOUNT)
    await subscribe(action_server_url_backends_down, conv, "订阅停电通知")
    result = await unsubscribe(action_server_url_backends_down, conv, "退订")
    assert "已为您取消" in texts(result)[0]
