"""Hall queue service: 营业厅, their live queues, business types, remote ticket taking.

Each line's counters for a day (numbers issued, number being served) are seeded on first use
that day from a fixed seed, then change only when a number is taken or ``/advance`` is called.
"""
from __future__ import annotations

import json
import math
import random
import sqlite3
from datetime import date, datetime, time
from typing import Any, Optional

import chinese_calendar
from aiohttp import web

from backends.catalog import BUSINESS_TYPES, BY_CODE, BY_PREFIX
from backends.db import Clock, Database, iso
from backends.places import COMMUNITIES, core_named, match_communities
from backends.web import (
    CLOCK, DB, ApiError, ascii_digits, json_response, not_found, read_json_object, required_str,
    service_app,
)

WEEKDAY_LABEL = "周一至周五"
WEEKEND_LABEL = "周六、周日及法定节假日"
MAX_TICKETS_PER_HOLDER_PER_DAY = 10


def _span(hours: Optional[str]) -> Optional[tuple[time, Optional[time]]]:
    if not hours:
        return None
    start, end = hours.split("-")
    h, m = map(int, start.split(":"))
    eh, em = map(int, end.split(":"))
    return time(h, m), (None if eh == 24 else time(eh, em))


def opening_hours_text(hall: sqlite3.Row) -> str:
    weekday, weekend = hall["weekday_hours"], hall["weekend_hours"]
    if weekday == "00:00-24:00" and weekend == "00:00-24:00":
        return "全天24小时营业"
    parts = [f"{WEEKDAY_LABEL} {weekday}"]
    parts.append(f"{WEEKEND_LABEL} {weekend}" if weekend else f"{WEEKEND_LABEL}休息")
    return "；".join(parts)


def is_working_day(day: date) -> bool:
    """Statutory working day (holidays and make-up working weekends via chinese_calendar);
    plain Monday–Friday for years the calendar has no data for yet."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return day.weekday() < 5


def is_open(hall: sqlite3.Row, now: datetime) -> bool:
    """Halls keep their weekday hours on working days and their weekend hours on rest days."""
    span = _span(hall["weekday_hours"] if is_working_day(now.date()) else hall["weekend_hours"])
    if span is None:
        return False
    start, end = span
    moment = now.time()
    return start <= moment and (end is None or moment < end)


def hall_json(hall: sqlite3.Row, now: datetime) -> dict[str, Any]:
    return {"hall_id": hall["hall_id"], "name": hall["name"], "address": hall["address"],
            "district": hall["district"], "opening_hours": opening_hours_text(hall),
            "business_types": json.loads(hall["business_types"]), "open_now": is_open(hall, now)}


def load_hall(db: Database, hall_id: str) -> sqlite3.Row:
    hall = db.one("SELECT * FROM halls WHERE hall_id = ?", (hall_id,))
    if hall is None:
        raise not_found(f"no hall {hall_id!r}")
    return hall


def _ensure_day(conn: sqlite3.Connection, hall: sqlite3.Row, day: date, now: datetime) -> None:
    """Seed the hall's lines for ``day`` if this is the first use that day."""
    if conn.execute("SELECT 1 FROM queue_lines WHERE hall_id = ? AND day = ? LIMIT 1",
                    (hall["hall_id"], day.isoformat())).fetchone():
        return
    for code in json.loads(hall["business_types"]):
        rng = random.Random(f"{day.isoformat()}:{hall['hall_id']}:{code}")
        served = rng.randint(3, 45) if code == "payment" else rng.randint(1, 18)
        waiting = rng.randint(0, 12) if code == "payment" else rng.randint(0, 6)
        conn.execute("INSERT INTO queue_lines VALUES (?, ?, ?, ?, ?, ?)",
                     (hall["hall_id"], day.isoformat(), code, served + waiting, served, iso(now)))


def _lines(db: Database, hall: sqlite3.Row, now: datetime) -> list[sqlite3.Row]:
    with db.transaction() as conn:
        _ensure_day(conn, hall, now.date(), now)
        return conn.execute("SELECT * FROM queue_lines WHERE hall_id = ? AND day = ?",
                            (hall["hall_id"], now.date().isoformat())).fetchall()


def _estimate(code: str, people: int) -> int:
    bt = BY_CODE[code]
    return math.ceil(people * bt.avg_service_minutes / bt.windows) if people > 0 else 0


def _number(code: str, seq: int) -> str:
    return f"{BY_CODE[code].prefix}{seq:03d}"


def queue_json(db: Database, hall: sqlite3.Row, now: datetime) -> dict[str, Any]:
    open_now = is_open(hall, now)
    order = {b.code: i for i, b in enumerate(BUSINESS_TYPES)}
    lines, updated = [], None
    for line in sorted(_lines(db, hall, now), key=lambda r: order[r["business_type"]]):
        code = line["business_type"]
        waiting = max(0, line["issued"] - line["served"]) if open_now else 0
        lines.append({
            "business_type": code, "business_name": BY_CODE[code].name, "waiting": waiting,
            "now_serving": (_number(code, line["served"])
                            if open_now and 0 < line["served"] <= line["issued"] else None),
            "avg_service_minutes": BY_CODE[code].avg_service_minutes,
            "estimated_wait_minutes": _estimate(code, waiting),
        })
        updated = max(updated or line["updated_at"], line["updated_at"])
    return {"hall_id": hall["hall_id"], "name": hall["name"], "open_now": open_now,
            "updated_at": updated or iso(now), "lines": lines}


def ticket_json(ticket: sqlite3.Row, line: sqlite3.Row, hall: sqlite3.Row, now: datetime) -> dict[str, Any]:
    """A number's state: ``position`` = how many numbers are called before it (0 if called)."""
    code, seq, served = ticket["business_type"], ticket["seq"], line["served"]
    if ticket["day"] != now.date().isoformat():
        status = "done" if seq <= served else "expired"
    elif seq < served:
        status = "done"
    elif seq == served:
        status = "serving"
    else:
        status = "waiting" if is_open(hall, now) else "expired"
    position = seq - served if status == "waiting" else 0
    return {"ticket_number": ticket["ticket_number"], "hall_id": ticket["hall_id"],
            "business_type": code, "status": status, "position": position,
            "estimated_wait_minutes": _estimate(code, position)}


def halls_for_area(halls: list[sqlite3.Row], area: str) -> list[sqlite3.Row]:
    """Halls named in ``area`` (东山营业厅, 东山), else the halls of the 街道 or district it names.

    A 街道 without a hall of its own falls back to the halls of its district.
    """
    text = "".join(area.split())
    named = [h for h in halls if core_named(h["name"][len(h["district"]):].replace("营业厅", ""), text)]
    if named:
        return named
    places = match_communities(text)
    if not places:
        return []
    streets = {c.street for c in places}
    districts = {c.district for c in places}
    whole_districts = {c.street for c in COMMUNITIES if c.district in districts}
    if streets != whole_districts:
        in_streets = [h for h in halls if h["street"] in streets]
        if in_streets:
            return in_streets
    return [h for h in halls if h["district"] in districts]


async def list_halls(request: web.Request) -> web.Response:
    db, now = request.app[DB], request.app[CLOCK]()
    halls = db.query("SELECT * FROM halls ORDER BY sort_order")
    area = (request.query.get("area") or "").strip()[:100]
    if area:
        halls = halls_for_area(halls, area)
    return json_response({"halls": [hall_json(h, now) for h in halls]})


async def get_queue(request: web.Request) -> web.Response:
    db = request.app[DB]
    hall = load_hall(db, request.match_info["hall"])
    return json_response(queue_json(db, hall, request.app[CLOCK]()))


async def list_business_types(request: web.Request) -> web.Response:
    return json_response({"business_types": [b.to_json() for b in BUSINESS_TYPES]})


async def take_ticket(request: web.Request) -> web.Response:
    db, now = request.app[DB], request.app[CLOCK]()
    hall = load_hall(db, request.match_info["hall"])
    body = await read_json_object(request)
    code = required_str(body, "business_type", 40)
    holder = required_str(body, "holder", 200)
    if code not in json.loads(hall["business_types"]):
        raise ApiError(400, "unsupported_business_type",
                       f"{hall['name']} does not handle {code!r}")
    if not is_open(hall, now):
        raise ApiError(409, "hall_closed", f"{hall['name']} is closed now ({opening_hours_text(hall)})")
    day = now.date().isoformat()
    with db.transaction() as conn:
        _ensure_day(conn, hall, now.date(), now)
        line = conn.execute("SELECT * FROM queue_lines WHERE hall_id = ? AND day = ? AND business_type = ?",
                            (hall["hall_id"], day, code)).fetchone()
        mine = conn.execute("SELECT * FROM queue_tickets WHERE hall_id = ? AND day = ? AND holder = ?"
                            " AND business_type = ? AND seq >= ?",
                            (hall["hall_id"], day, holder, code, line["served"])).fetchone()
        if mine is not None:  # already waiting in this line: the same number again, not a new one
            return json_response(_issued(mine, line, hall, now), 200)
        taken = conn.execute("SELECT COUNT(*) FROM queue_tickets WHERE day = ? AND holder = ?",
                             (day, holder)).fetchone()[0]
        if taken >= MAX_TICKETS_PER_HOLDER_PER_DAY:
            raise ApiError(429, "too_many_tickets", "too many numbers taken today")
        seq = line["issued"] + 1
        conn.execute("UPDATE queue_lines SET issued = ?, updated_at = ? WHERE hall_id = ? AND day = ?"
                     " AND business_type = ?", (seq, iso(now), hall["hall_id"], day, code))
        conn.execute("INSERT INTO queue_tickets VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (hall["hall_id"], day, _number(code, seq), code, seq, holder, iso(now)))
        ticket = conn.execute("SELECT * FROM queue_tickets WHERE hall_id = ? AND day = ? AND ticket_number = ?",
                              (hall["hall_id"], day, _number(code, seq))).fetchone()
    return json_response(_issued(ticket, line, hall, now), 201)


def _issued(ticket: sqlite3.Row, line: sqlite3.Row, hall: sqlite3.Row, now: datetime) -> dict[str, Any]:
    state = ticket_json(ticket, line, hall, now)
    return {"ticket_number": ticket["ticket_number"], "hall_id": ticket["hall_id"],
            "business_type": ticket["business_type"], "position": state["position"],
            "estimated_wait_minutes": state["estimated_wait_minutes"], "issued_at": ticket["issued_at"]}


def _ticket_with_line(db: Database, hall_id: str, day: str, number: str):
    ticket = db.one("SELECT * FROM queue_tickets WHERE hall_id = ? AND day = ? AND ticket_number = ?",
                    (hall_id, day, number))
    if ticket is None:
        return None, None
    line = db.one("SELECT * FROM queue_lines WHERE hall_id = ? AND day = ? AND business_type = ?",
                  (hall_id, day, ticket["business_type"]))
    return ticket, line


async def get_ticket(request: web.Request) -> web.Response:
    """Today's number at the hall; numbers issued at the counter today are known too."""
    db, now = request.app[DB], request.app[CLOCK]()
    hall = load_hall(db, request.match_info["hall"])
    number = request.match_info["number"].strip().upper()
    day = now.date().isoformat()
    ticket, line = _ticket_with_line(db, hall["hall_id"], day, number)
    if ticket is None:
        # A number handed out at the hall's own machine today (not through this API).
        bt = BY_PREFIX.get(number[:1])
        if bt is None or not ascii_digits(number[1:]) or bt.code not in json.loads(hall["business_types"]):
            raise not_found(f"no ticket {number!r} today")
        lines = {r["business_type"]: r for r in _lines(db, hall, now)}
        line, seq = lines[bt.code], int(number[1:])
        if not 1 <= seq <= line["issued"]:
            raise not_found(f"no ticket {number!r} today")
        ticket = {"hall_id": hall["hall_id"], "day": day, "ticket_number": number,
                  "business_type": bt.code, "seq": seq}
    return json_response(ticket_json(ticket, line, hall, now))


async def tickets_of_holder(request: web.Request) -> web.Response:
    db, now = request.app[DB], request.app[CLOCK]()
    holder = (request.query.get("holder") or "").strip()
    if not holder:
        raise ApiError(400, "bad_request", "holder is required")
    day = now.date().isoformat()
    found = []
    for ticket in db.query("SELECT * FROM queue_tickets WHERE holder = ? AND day = ? ORDER BY issued_at",
                           (holder, day)):
        hall = load_hall(db, ticket["hall_id"])
        _, line = _ticket_with_line(db, ticket["hall_id"], day, ticket["ticket_number"])
        found.append(ticket_json(ticket, line, hall, now))
    return json_response({"tickets": found})


async def advance(request: web.Request) -> web.Response:
    """Demo/test admin: finish the number at each counter and call the next one.

    When a line's last number is finished, ``served`` moves one past ``issued``: the counter is
    free, and the next number taken is served at once.
    """
    db, now = request.app[DB], request.app[CLOCK]()
    hall = load_hall(db, request.match_info["hall"])
    day = now.date().isoformat()
    with db.transaction() as conn:
        _ensure_day(conn, hall, now.date(), now)
        conn.execute("UPDATE queue_lines SET served = served + 1, updated_at = ? WHERE hall_id = ?"
                     " AND day = ? AND served <= issued", (iso(now), hall["hall_id"], day))
    return json_response(queue_json(db, hall, now))


def create_app(db: Database, clock: Clock) -> web.Application:
    """The hall queue API (mounted at /queue)."""
    app = service_app(db, clock, "queue")
    app.router.add_get("/halls", list_halls)
    app.router.add_get("/halls/{hall}/queue", get_queue)
    app.router.add_post("/halls/{hall}/tickets", take_ticket)
    app.router.add_get("/halls/{hall}/tickets/{number}", get_ticket)
    app.router.add_post("/halls/{hall}/advance", advance)
    app.router.add_get("/business-types", list_business_types)
    app.router.add_get("/tickets", tickets_of_holder)
    return app
