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
from backends.paging import page_request
from backends.web import CLOCK, DB, ascii_digits, bad_request, json_response, not_found, service_app

ACTIVE_HORIZON = timedelta(days=7)
STATUS_FILTERS = ("active", "planned", "ongoing", "all")


def _clock(value: str) -> time:
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


def _window(now: datetime, day_offset: int, start_clock: str, end_clock: str) -> tuple[datetime, datetime]:
    day = now.date() + timedelta(days=day_offset)
    start = datetime.combine(day, _clock(start_clock), LOCAL_TZ)
    end = datetime.combine(day, _clock(end_clock), LOCAL_TZ)
    if end <= start:
        end += timedelta(days=1)
    return start, end


def _anchor(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def outage_times(row: sqlite3.Row, now: datetime) -> tuple[datetime, datetime, datetime, Optional[datetime]]:
    """(start, end, announced_at, restored_at) of an outage, as of ``now``."""
    if row["kind"] == "planned":
        start, end = _window(now, row["day_offset"], row["start_clock"], row["end_clock"])
        first_day = row["day_offset"] if row["previous_day_offset"] is None else row["previous_day_offset"]
        # Announced the working morning 8 days ahead (of its first window, if it was moved): the
        # 7-day notice rule is kept with margin.
        announced = datetime.combine(now.date() + timedelta(days=first_day - 8), time(10, 0), LOCAL_TZ)
        return start, end, announced, end
    anchor = _anchor(now)
    start = anchor + timedelta(minutes=row["start_offset_min"])
    end = anchor + timedelta(minutes=row["end_offset_min"])
    restored = (None if row["restored_offset_min"] is None
                else anchor + timedelta(minutes=row["restored_offset_min"]))
    return start, end, start + timedelta(minutes=12), restored


def outage_events(row: sqlite3.Row, now: datetime) -> list[tuple[datetime, str]]:
    """What happened to an outage up to ``now``, oldest first: ``new`` (announced),
    ``rescheduled`` (its window moved), ``restored``."""
    _, _, announced, restored = outage_times(row, now)
    events = [(announced, "new")]
    if row["changed_offset_min"] is not None:
        events.append((_anchor(now) + timedelta(minutes=row["changed_offset_min"]), "rescheduled"))
    if restored is not None:
        events.append((restored, "restored"))
    return sorted(e for e in events if e[0] <= now)


def outage_json(row: sqlite3.Row, now: datetime) -> dict[str, Any]:
    start, end, announced, restored = outage_times(row, now)
    if restored is not None and restored <= now:
        status = "restored"
    elif start <= now:
        status = "ongoing"
    else:
        status = "scheduled"
    events = outage_events(row, now)
    previous = None
    if row["kind"] == "planned" and row["previous_day_offset"] is not None:
        previous = _window(now, row["previous_day_offset"], row["previous_start_clock"],
                           row["previous_end_clock"])
    return {
        "outage_id": row["outage_id"], "kind": row["kind"], "status": status,
        "district": row["district"], "street": row["street"], "community": row["community"],
        "affected_area": row["affected_area"], "reason": row["reason"],
        "start_time": iso(start), "end_time": iso(end), "announced_at": iso(announced),
        "restored_at": iso(restored) if status == "restored" else None,
        "revision": row["revision"],
        "updated_at": iso(events[-1][0] if events else announced),
        "previous_start_time": iso(previous[0]) if previous else None,
        "previous_end_time": iso(previous[1]) if previous else None,
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


async def list_changes(request: web.Request) -> web.Response:
    """Outages announced, rescheduled or restored after ``since`` (up to now), oldest change
    first, each with ``change``: its latest one. Keyset pages on (updated_at, outage_id); the
    outages themselves are few, so they are computed in memory."""
    try:
        since = datetime.fromisoformat(request.query.get("since", ""))
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise bad_request("since must be an ISO-8601 time with its offset")
    page = page_request(request)
    cursor: Optional[tuple[int, str]] = None
    if page.after is not None:
        stamp, _, outage_id = page.after.partition(":")
        if not ascii_digits(stamp) or not outage_id:
            raise bad_request("after is not a cursor of this listing")
        cursor = (int(stamp), outage_id)
    now = request.app[CLOCK]()
    changed = []
    for row in request.app[DB].query("SELECT * FROM outages"):
        events = outage_events(row, now)
        if events and events[-1][0] > since:
            key = (int(events[-1][0].timestamp()), row["outage_id"])
            if cursor is None or key > cursor:
                changed.append((key, {**outage_json(row, now), "change": events[-1][1]}))
    changed.sort(key=lambda item: item[0])
    page_items = changed[:page.limit]
    after = f"{page_items[-1][0][0]}:{page_items[-1][0][1]}" if len(changed) > page.limit else None
    return json_response({"outages": [item for _, item in page_items], "next": after})


async def list_areas(request: web.Request) -> web.Response:
    return json_response({"areas": [{"district": c.district, "street": c.street,
                                     "community": c.community} for c in COMMUNITIES]})


def create_app(db: Database, clock: Clock) -> web.Application:
    """The outage API (mounted at /outage)."""
    app = service_app(db, clock, "outage")
    app.router.add_get("/outages", list_outages)
    app.router.add_get("/outages/changes", list_changes)
    app.router.add_get("/outages/{outage_id}", get_outage)
    app.router.add_get("/areas", list_areas)
    return app
