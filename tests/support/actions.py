"""Call the real action server over HTTP the way Rasa does.

``run_action`` posts Rasa's action-webhook payload (the tracker state and the domain) to the
action server, with the session's ``ACTION_SERVER_TOKEN`` as Rasa sends it, and returns its JSON
answer: ``{"events": [...], "responses": [...]}``.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def load_domain() -> dict[str, Any]:
    """The assistant's domain, merged from every file in bot/domain as Rasa merges them."""
    merged: dict[str, Any] = {}
    for path in sorted((ROOT / "bot" / "domain").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, value in data.items():
            if key == "version":
                continue
            if isinstance(value, list):
                merged.setdefault(key, [])
                merged[key].extend(v for v in value if v not in merged[key])
            elif isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
            else:
                merged[key] = value
    return merged


def user_message(
    text: str,
    intent: str,
    entities: list[dict[str, Any]] | None = None,
    confidence: float = 0.99,
) -> dict[str, Any]:
    """A parsed user message as Rasa puts it in ``latest_message``."""
    return {
        "text": text,
        "intent": {"name": intent, "confidence": confidence},
        "entities": entities or [],
        "intent_ranking": [{"name": intent, "confidence": confidence}],
    }


def entity(name: str, value: str, text: str | None = None) -> dict[str, Any]:
    """An extracted entity; ``text`` locates start/end when given."""
    start = text.find(value) if text else 0
    return {"entity": name, "value": value, "start": max(start, 0),
            "end": max(start, 0) + len(value), "extractor": "test"}


async def run_action(
    action_server_url: str,
    action: str,
    *,
    sender_id: str,
    slots: dict[str, Any] | None = None,
    latest_message: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    active_loop: dict[str, Any] | None = None,
    expect_status: int = 200,
) -> dict[str, Any]:
    """Run ``action`` on the action server for a tracker in the given state."""
    domain = load_domain()
    all_slots = {name: None for name in domain.get("slots", {})}
    all_slots.update(slots or {})
    payload = {
        "next_action": action,
        "sender_id": sender_id,
        "version": "3.6.2",
        "domain": domain,
        "tracker": {
            "sender_id": sender_id,
            "slots": all_slots,
            "latest_message": latest_message or user_message("", "greet"),
            "latest_event_time": None,
            "followup_action": None,
            "paused": False,
            "events": events or [],
            "latest_input_channel": sender_id.split(":", 1)[0],
            "active_loop": active_loop or {},
            "latest_action": {"action_name": "action_listen"},
            "latest_action_name": "action_listen",
        },
    }
    headers = {"Authorization": f"Bearer {os.environ['ACTION_SERVER_TOKEN']}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(action_server_url, json=payload) as response:
            body = await response.json(content_type=None)
            assert response.status == expect_status, (response.status, body)
            return body


def texts(result: dict[str, Any]) -> list[str]:
    """The texts of the action's responses, in order."""
    return [r.get("text") or "" for r in result.get("responses", [])]


def slot_events(result: dict[str, Any]) -> dict[str, Any]:
    """The slots the action set, last value wins."""
    return {e["name"]: e["value"] for e in result.get("events", []) if e.get("event") == "slot"}
