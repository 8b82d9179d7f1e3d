"""Tickets service: repair (抢修, ids GD…), complaint (投诉, ids TS…) and callback (人工回电, ids HF…:
a customer who asked for a human agent outside business hours or stopped waiting) tickets."""
from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from typing import Any

from aiohttp import web

from backends.db import LOCAL_TZ, Clock, Database, iso
from backends.web import (
    CLOCK, DB, ApiError, bad_request, json_response, not_found, optional_str, read_json_object,
    required_str, service_app,
)

KINDS = {"repair": "GD", "complaint": "TS", "callback": "HF"}
SEVERITIES = ("urgent", "high", "normal", "low")
_ACCOUNT_RE = re.compile(r"[0-9]{10}")
_PHONE_RE = re.compile(r"1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8}")
_FIELDS = ("ticket_id", "kind", "category", "description", "severity", "status", "created_at",
           "updated_at", "promised_by", "account_number", "conversation_id")


def ticket_json(row: sqlite3.Row) -> dict[str, Any]:
    data = {k: row[k] for k in _FIELDS}
    data["history"] = json.loads(row["history"])
    return data


def _next_id(conn: sqlite3.Connection, kind: str, now: datetime) -> str:
    prefix = f"{KINDS[kind]}{now:%Y%m%d}"
    conn.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1",
                 (prefix,))
    value = conn.execute("SELECT value FROM counters WHERE name = ?", (prefix,)).fetchone()[0]
    return f"{prefix}{value:06d}"


def _promised_by(body: dict[str, Any]) -> str:
    raw = required_str(body, "promised_by", 40)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request("promised_by must be an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise bad_request("promised_by needs a UTC offset")
    return iso(moment.astimezone(LOCAL_TZ))


async def create_ticket(request: web.Request) -> web.Response:
    db, now = request.app[DB], request.app[CLOCK]()
    body = await read_json_object(request)
    kind = required_str(body, "kind", 20)
    if kind not in KINDS:
        raise bad_request(f"kind must be one of {', '.join(KINDS)}")
    severity = required_str(body, "severity", 20)
    if severity not in SEVERITIES:
        raise bad_request(f"severity must be one of {', '.join(SEVERITIES)}")
    category = required_str(body, "category", 60)
    description = required_str(body, "description", 2000)
    conversation = required_str(body, "conversation_id", 200)
    promised = _promised_by(body)
    account = optional_str(body, "account_number", 10)
    if account is not None and not _ACCOUNT_RE.fullmatch(account):
        raise bad_request("account_number must be 10 digits")
    phone = optional_str(body, "contact_phone", 20)
    if phone is not None and not _PHONE_RE.fullmatch(phone):
        raise bad_request("contact_phone must be a mainland mobile or landline number")
    address, area = optional_str(body, "address", 300), optional_str(body, "area", 100)
    if kind == "repair" and not (account or address or area):
        raise ApiError(400, "missing_location", "a repair needs an account, an address or an area")
    stamp = iso(now)
    note = "已受理，抢修人员将尽快联系您" if kind == "repair" else "已受理，将在承诺时限内联系您"
    history = json.dumps([{"at": stamp, "status": "received", "note": note}], ensure_ascii=False)
    with db.transaction() as conn:
        ticket_id = _next_id(conn, kind, now)
        conn.execute("INSERT INTO tickets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (ticket_id, kind, category, description, severity, "received", stamp, stamp,
                      promised, account, conversation, phone, address, area, history))
        row = conn.execute("SELECT * FROM tickets WHERE ticket_id = ?", (ticket_id,)).fetchone()
    return json_response(ticket_json(row), 201)


async def get_ticket(request: web.Request) -> web.Response:
    ticket_id = request.match_info["ticket_id"].strip().upper()
    row = request.app[DB].one("SELECT * FROM tickets WHERE ticket_id = ?", (ticket_id,))
    if row is None:
        raise not_found(f"no ticket {ticket_id!r}")
    return json_response(ticket_json(row))


async def list_tickets(request: web.Request) -> web.Response:
    conversation = (request.query.get("conversation_id") or "").strip()
    if not conversation:
        raise bad_request("conversation_id is required")
    rows = request.app[DB].query(
        "SELECT * FROM tickets WHERE conversation_id = ? ORDER BY created_at DESC, ticket_id DESC",
        (conversation,))
    return json_response({"tickets": [ticket_json(r) for r in rows]})


def create_app(db: Database, clock: Clock) -> web.Application:
    """The tickets API (mounted at /tickets)."""
    app = service_app(db, clock, "tickets")
    app.router.add_post("/tickets", create_ticket)
    app.router.add_get("/tickets", list_tickets)
    app.router.add_get("/tickets/{ticket_id}", get_ticket)
    return app
