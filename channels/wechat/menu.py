"""The 公众号 custom menu: build it from ``bot/wechat_menu.yml`` and create, show or delete it.

Usage::

    python -m channels.wechat.menu create --file bot/wechat_menu.yml
    python -m channels.wechat.menu show
    python -m channels.wechat.menu delete

Credentials come from WECHAT_APP_ID / WECHAT_APP_SECRET (and WECHAT_API_BASE_URL).  When
REDIS_URL is set the CLI uses the gateway's shared access_token instead of fetching its own:
fetching a new token would start the 5-minute expiry of the one the gateway is using.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml

INTENT_KEY_PREFIX = "intent:"
_INTENT_RE = re.compile(r"[a-z][a-z0-9_]{0,100}")


class MenuError(ValueError):
    """The menu file breaks WeChat's menu rules."""


def _blen(text: str) -> int:
    return len(text.encode("utf-8"))


def intent_of_key(key: str) -> str | None:
    """The intent a CLICK key stands for (``intent:query_bill`` → ``query_bill``), else None."""
    if not key.startswith(INTENT_KEY_PREFIX):
        return None
    intent = key[len(INTENT_KEY_PREFIX):]
    return intent if _INTENT_RE.fullmatch(intent) else None


def _leaf(item: dict[str, Any], where: str, name_limit: int) -> dict[str, Any]:
    name = item.get("name")
    if not isinstance(name, str) or not name or _blen(name) > name_limit:
        raise MenuError(f"{where}: name must be 1..{name_limit} bytes (UTF-8), got {name!r}")
    if "intent" in item:
        intent = str(item["intent"])
        if not _INTENT_RE.fullmatch(intent):
            raise MenuError(f"{where}: invalid intent name {intent!r}")
        return {"type": "click", "name": name, "key": INTENT_KEY_PREFIX + intent}
    if "url" in item:
        url = str(item["url"])
        if not url.startswith(("http://", "https://")) or _blen(url) > 1024:
            raise MenuError(f"{where}: url must be http(s) and ≤ 1024 bytes")
        return {"type": "view", "name": name, "url": url}
    raise MenuError(f"{where}: needs `intent` (CLICK) or `url` (VIEW), or `sub_button`")


def build_menu(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate the YAML structure against WeChat's rules and return the API's JSON body."""
    buttons = spec.get("button") if isinstance(spec, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise MenuError("`button` must list 1 to 3 top-level buttons (WeChat's limit)")
    result = []
    for i, top in enumerate(buttons, 1):
        where = f"button {i}"
        if not isinstance(top, dict):
            raise MenuError(f"{where}: must be a mapping")
        subs = top.get("sub_button")
        if subs is None:
            result.append(_leaf(top, where, 16))
            continue
        name = top.get("name")
        if not isinstance(name, str) or not name or _blen(name) > 16:
            raise MenuError(f"{where}: name must be 1..16 bytes (UTF-8), got {name!r}")
        if not isinstance(subs, list) or not 1 <= len(subs) <= 5:
            raise MenuError(f"{where}: `sub_button` must list 1 to 5 items (WeChat's limit)")
        result.append({"name": name, "sub_button": [
            _leaf(sub if isinstance(sub, dict) else {}, f"{where}.{j}", 60) for j, sub in enumerate(subs, 1)]})
    return {"button": result}


def load_menu(path: str | Path) -> dict[str, Any]:
    """Read and validate a menu YAML file."""
    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MenuError(f"cannot read {path}: {exc}") from exc
    return build_menu(spec)


def menu_intents(menu: dict[str, Any]) -> dict[str, str]:
    """CLICK key → intent for every CLICK button of a built menu."""
    keys: dict[str, str] = {}
    for top in menu.get("button", []):
        for item in top.get("sub_button") or [top]:
            intent = intent_of_key(item.get("key", "")) if item.get("type") == "click" else None
            if intent:
                keys[item["key"]] = intent
    return keys


class _MemoryStore:
    """The three Redis calls TokenManager makes, in memory, for a one-shot CLI without Redis."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float]] = {}

    async def get(self, key: str) -> str | None:
        value = self._data.get(key)
        return value[0] if value and value[1] > time.monotonic() else None

    async def set(self, key: str, value: str, nx: bool = False, px: int | None = None) -> bool:
        if nx and await self.get(key) is not None:
            return False
        self._data[key] = (value, time.monotonic() + (px / 1000 if px else 1e9))
        return True

    async def eval(self, script: str, numkeys: int, key: str, owner: str) -> int:
        if await self.get(key) == owner:
            del self._data[key]
            return 1
        return 0


async def _run(command: str, file: str, env: dict[str, str]) -> int:
    from channels.wechat.api import WeChatApi
    from channels.wechat.config import DEFAULT_API_BASE_URL
    from channels.wechat.errors import WeChatApiError

    app_id, secret = env.get("WECHAT_APP_ID", ""), env.get("WECHAT_APP_SECRET", "")
    if not app_id or not secret:
        print("WECHAT_APP_ID and WECHAT_APP_SECRET must be set", file=sys.stderr)
        return 2
    menu = None
    if command == "create":
        try:
            menu = load_menu(file)
        except MenuError as exc:
            print(f"invalid menu: {exc}", file=sys.stderr)
            return 2
    redis = None
    if env.get("REDIS_URL"):
        from integrations.redis_url import async_client

        redis = async_client(env["REDIS_URL"])
    api = WeChatApi(env.get("WECHAT_API_BASE_URL") or DEFAULT_API_BASE_URL, app_id, secret,
                    redis if redis is not None else _MemoryStore())
    try:
        if command == "create":
            await api.create_menu(menu)
            print(f"menu created: {len(menu['button'])} buttons, "
                  f"{len(menu_intents(menu))} intent keys")
        elif command == "show":
            current = await api.get_menu()
            print(json.dumps(current, ensure_ascii=False, indent=2) if current else "no menu")
        elif command == "delete":
            await api.delete_menu()
            print("menu deleted")
        return 0
    except WeChatApiError as exc:
        print(f"WeChat API error: {exc}", file=sys.stderr)
        return 1
    finally:
        await api.close()
        if redis is not None:
            await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m channels.wechat.menu",
                                     description="Manage the 公众号 custom menu.")
    parser.add_argument("command", choices=("create", "show", "delete"))
    parser.add_argument("--file", default="bot/wechat_menu.yml", help="menu YAML (for create)")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args.command, args.file, dict(os.environ)))


if __name__ == "__main__":
    sys.exit(main())
