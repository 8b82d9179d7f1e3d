"""Outage service: planned (计划停电) and fault (故障停电) outages by area or 户号, and the areas.

Planned outages are stored as a day offset from today plus local clock times, faults as minute
offsets from the current hour, so the reference data always has outages around now: some
ongoing, some planned within the next 7 days, some restored.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, time, timedelta
from typing import Any, Optional

from aiohttp import web

from backends.billing import load_account
from backends.db import LOCAL_TZ, Clock, Database, iso
from backends.places import COMMUNITIES, match_communities
from backends.web import CLOCK, DB, bad_request, json_response, not_found, service_app

ACTIVE_HORIZON = timedelta(days=7)
STATUS_FILTERS = ("active", "planned", "ongoing", "all")


def _clock(value: str) -> time:
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


def outage_times(row: sqlite3.Row, now: datetime) -> tuple[datetime, datetime, datetime, Optional[datetime]]:
    """(start, end, announced_at, restored_at) of an outage, as of ``now``."""
    if row["kind"] == "planned":
        day = now.date() + timedelta(days=row["day_offset"])
        start = datetime.combine(day, _clock(row["start_clock"]), LOCAL_TZ)
        end = datetime.combine(day, _clock(row["end_clock"]), LOCAL_TZ)
        if end <= start:
            end += timedelta(days=1)
        # Announced the working morning 8 days ahead: the 7-day notice rule is kept with margin.
        announced = datetime.combine(day - timedelta(days=8), time(10, 0), LOCAL_TZ)
        return start, end, announced, end
    anchor = now.replace(minute=0, second=0, microsecond=0)
    start = anchor + timedelta(minutes=row["start_offset_min"])
    end = anchor + timedelta(minutes=row["end_offset_min"])
    restored = (None if row["restored_offset_min"] is None
                else anchor + timedelta(minutes=row["restored_offset_min"]))
    return start, end, start + timedelta(minutes=12), restored


def outage_json(row: sqlite3.Row, now: datetime) -> dict[str, Any]:
    start, end, announced, restored = outage_times(row, now)
    if restored is not None and restored <= now:
        status = "restored"
    elif start <= now:
        status = "ongoing"
    else:
        status = "scheduled"
    return {
        "outage_id": row["outage_id"], "kind": row["kind"], "status": status,
        "district": row["district"], "street": row["street"], "community": row["community"],
        "affected_area": row["affected_area"], "reason": row["reason"],
        "start_time": iso(start), "end_time": iso(end), "announced_at": iso(announced),
    }


def _wanted(outage: dict[str, Any], status: str, now: datetime) -> bool:
    if status == "all":
        return True
    if status == "ongoing":
        return outage["status"] == "ongoing"
    if status == "planned":
        return outage["status"] == "scheduled"
    starts = datetime.fromisoformat(outage["start_time"])
    return outage["status"] == "ongoing" or (
        outage["status"] == "scheduled" and starts <= now + ACTIVE_HORIZON)


def find_outages(db: Database, now: datetime, area: Optional[str], account: Optional[sqlite3.Row],
                 status: str) -> list[dict[str, Any]]:
    places: Optional[set[tuple[str, str, str]]] = None
    if area:
        places = {(c.district, c.street, c.community) for c in match_communities(area)}
    if account is not None:
        own = {(account["district"], account["street"], account["community"])}
        places = own if places is None else places & own
    rows = db.query("SELECT * FROM outages ORDER BY outage_id")
    found = [outage_json(r, now) for r in rows
             if places is None or (r["district"], r["street"], r["community"]) in places]
    found = [o for o in found if _wanted(o, status, now)]
    order = {"ongoing": 0, "scheduled": 1, "restored": 2}
    return sorted(found, key=lambda o: (order[o["status"]], o["start_time"]))


async def list_outages(request: web.Request) -> web.Response:
    status = request.query.get("status", "active")
    if status not in STATUS_FILTERS:
        raise bad_request(f"status must be one of {', '.join(STATUS_FILTERS)}")
    area = (request.query.get("area") or "").strip()[:100] or None
    number = (request.query.get("account_number") or "").strip() or None
    db = request.app[DB]
    account = load_account(db, number) if number else None
    return json_response({"outages": find_outages(db, request.app[CLOCK](), area, account, status)})


async def get_outage(request: web.Request) -> web.Response:
    outage_id = request.match_info["outage_id"]
    rows = request.app[DB].query("SELECT * FROM outages WHERE outage_id = ?", (outage_id,))
    if not rows:
        raise not_found(f"no outage {outage_id[:20]!r}")
    return json_response(outage_json(rows[0], request.app[CLOCK]()))


async def list_areas(request: web.Request) -> web.Response:
    return json_response({"areas": [{"district": c.district, "street": c.street,
                                     "community": c.community} for c in COMMUNITIES]})


def create_app(db: Database, clock: Clock) -> web.Application:
    """The outage API (mounted at /outage)."""
    app = service_app(db, clock, "outage")
    app.router.add_get("/outages", list_outages)
    app.router.add_get("/outages/{outage_id}", get_outage)
    app.router.add_get("/areas", list_areas)
    return app
