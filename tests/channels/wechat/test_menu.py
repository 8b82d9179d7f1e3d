"""The custom menu: YAML validation against WeChat's rules, and the CLI against the fake API."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import yaml

from channels.wechat.menu import MenuError, build_menu, intent_of_key, load_menu, menu_intents
from fakes.wechat_api import FakeWeChatApi

ROOT = Path(__file__).resolve().parents[3]
MENU_FILE = ROOT / "bot" / "wechat_menu.yml"
DOMAIN_INTENTS = set(yaml.safe_load((ROOT / "bot/domain/core.yml").read_text(encoding="utf-8"))["intents"])


def test_shipped_menu_is_valid_and_maps_only_domain_intents():
    menu = load_menu(MENU_FILE)
    names = [b["name"] for b in menu["button"]]
    assert names == ["账单", "停电", "营业厅/更多"]
    intents = menu_intents(menu)
    assert {"query_bill", "query_outage", "report_fault", "queue_lookup", "take_number",
            "request_human"} <= set(intents.values())
    assert set(intents.values()) <= {str(i) if isinstance(i, str) else next(iter(i)) for i in DOMAIN_INTENTS}


@pytest.mark.parametrize("spec", [
    {"button": [{"name": f"b{i}", "intent": "greet"} for i in range(4)]},     # 4 top-level buttons
    {"button": [{"name": "账单", "sub_button": [{"name": f"s{i}", "intent": "greet"} for i in range(6)]}]},
    {"button": [{"name": "一二三四五六", "intent": "greet"}]},                  # 18 bytes > 16
    {"button": [{"name": "a", "intent": "Query-Bill"}]},                      # not an intent name
    {"button": [{"name": "a", "url": "javascript:alert(1)"}]},
    {"button": [{"name": "a"}]},
    {"button": []},
])
def test_menus_breaking_wechat_rules_are_refused(spec):
    with pytest.raises(MenuError):
        build_menu(spec)


def test_intent_keys():
    assert intent_of_key("intent:query_bill") == "query_bill"
    assert intent_of_key("intent:../x") is None
    assert intent_of_key("V1001_TODAY_MUSIC") is None


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channels.wechat.menu", *args, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_creates_shows_and_deletes_the_menu_through_the_api():
    fake = FakeWeChatApi(app_id="wxmenucli00000001")
    base = await fake.start()
    env = {"WECHAT_APP_ID": fake.app_id, "WECHAT_APP_SECRET": fake.app_secret, "WECHAT_API_BASE_URL": base,
           "REDIS_URL": ""}
    try:
        code, out, err = await _cli("show", env=env)
        assert (code, out.strip()) == (0, "no menu"), err
        code, out, err = await _cli("create", "--file", str(MENU_FILE), env=env)
        assert code == 0, err
        assert fake.menu == load_menu(MENU_FILE)
        code, out, err = await _cli("show", env=env)
        assert code == 0 and "intent:query_bill" in out and "营业厅/更多" in out
        code, out, err = await _cli("delete", env=env)
        assert code == 0 and fake.menu is None
        code, out, err = await _cli("create", env={**env, "WECHAT_APP_SECRET": "wrong"})
        assert code == 1 and "40125" in err
    finally:
        await fake.close()


async def test_cli_uses_the_gateways_shared_token_when_redis_is_configured(redis_url):
    from redis.asyncio import Redis

    from channels.wechat.api import WeChatApi

    fake = FakeWeChatApi(app_id="wxmenucli00000002")
    base = await fake.start()
    redis = Redis.from_url(redis_url)
    gateway_side = WeChatApi(base, fake.app_id, fake.app_secret, redis)
    try:
        await gateway_side.tokens.get()
        assert fake.token_requests == 1
        env = {"WECHAT_APP_ID": fake.app_id, "WECHAT_APP_SECRET": fake.app_secret,
               "WECHAT_API_BASE_URL": base, "REDIS_URL": redis_url}
        code, out, err = await _cli("create", "--file", str(MENU_FILE), env=env)
        assert code == 0, err
        assert fake.token_requests == 1  # no second token: the gateway's keeps working
        await gateway_side.send_text("ouser0001", "菜单已更新")
        assert fake.texts_to("ouser0001") == ["菜单已更新"]
    finally:
        await gateway_side.close()
        await redis.aclose()
        await fake.close()
