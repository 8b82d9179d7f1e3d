"""Payment methods come from the settings file, through the real action server.

Listing them calls no backend, so these tests run against action servers whose backends are
unreachable: the answer must not depend on them.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from actions.settings import Settings
from scripts.stack import backends_env, free_port
from tests.actions.account_data import sender
from tests.support.actions import run_action, texts, user_message


async def ask(url: str, text: str) -> dict:
    return await run_action(url, "action_list_payment_methods", sender_id=sender("pay"),
                            latest_message=user_message(text, "ask_payment_methods"))


async def test_lists_every_configured_method_in_order(action_server_url_backends_down):
    methods = Settings.load().payment_methods
    result = await ask(action_server_url_backends_down, "怎么交电费")
    reply = texts(result)[0]
    positions = [reply.index(f"{m.name}：{m.description}") for m in methods]
    assert positions == sorted(positions)
    titles = [b["title"] for b in result["responses"][0]["buttons"]]
    assert "查电费" in titles and "订阅缴费提醒" in titles
    assert result["events"] == []


@pytest.mark.parametrize("question, expected", [
    ("可以用微信交电费吗", "微信缴费"),
    ("支付宝能交电费吗", "支付宝缴费"),
    ("能不能银行代扣", "银行代扣"),
    ("网上国网APP怎么缴费", "网上国网App"),
])
async def test_the_method_asked_about_comes_first(action_server_url_backends_down, question, expected):
    methods = {m.name: m for m in Settings.load().payment_methods}
    reply = texts(await ask(action_server_url_backends_down, question))[0]
    assert reply.startswith(f"您好，{expected}：{methods[expected].description}")
    assert "此外" in reply
    for name in methods:
        assert name in reply


@pytest.fixture(scope="module")
def action_server_with_other_methods(stack, redis_url, dead_backends_url, tmp_path_factory):
    path = Path(tmp_path_factory.mktemp("payments")) / "methods.yml"
    path.write_text(
        "payment_methods:\n"
        "  - name: 电费充值卡\n    description: 在便利店购买充值卡后扫码充值。\n    online: false\n"
        "  - name: 微信缴费\n    description: 关注本公众号后点击“我要缴费”。\n    online: true\n",
        encoding="utf-8",
    )
    env = {**backends_env(dead_backends_url), "PAYMENT_METHODS_FILE": str(path)}
    return stack.start_action_server(free_port(), redis_url, env)


async def test_methods_follow_the_file_not_the_code(action_server_with_other_methods):
    reply = texts(await ask(action_server_with_other_methods, "缴费方式有哪些"))[0]
    assert "1. 电费充值卡：在便利店购买充值卡后扫码充值。" in reply
    assert "2. 微信缴费：关注本公众号后点击“我要缴费”。" in reply
    assert "支付宝" not in reply and "银行代扣" not in reply
