"""Applications service (业扩): 新装/增容/过户/光伏并网/销户 with their stages and 客户经理.

Submission and stage dates are stored as day offsets from today, so in-progress applications
stay in progress and overdue ones stay overdue. Time limits are not the backend's business: the
actions judge them against the service commitments.
"""
from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, time, timedelta
from typing import Any, Optional

from aiohttp import web

from backends.db import LOCAL_TZ, Clock, Database, iso
from backends.web import CLOCK, DB, bad_request, json_response, not_found, service_app

_NUMBER_RE = re.compile(r"YK[0-9]{10}")
FINISHED_STAGE = {"completed": "已办结", "cancelled": "已撤销"}


def _at(now: datetime, offset_days: Optional[int], clock: str) -> Optional[str]:
    if offset_days is None:
        return None
    hour, minute = map(int, clock.split(":"))
    moment = datetime.combine(now.date() + timedelta(days=offset_days), time(hour, minute), LOCAL_TZ)
    return iso(min(moment, now))


def application_json(row: sqlite3.Row, now: datetime) -> dict[str, Any]:
    submitted = _at(now, row["submitted_offset_days"], row["submitted_clock"])
    stages: list[dict[str, Any]] = []
    for stage in json.loads(row["stages"]):
        # A stage starts when the previous one completed; the first when the application came in.
        started = stages[-1]["completed_at"] if stages else submitted
        completed = _at(now, stage["end_offset_days"], "17:00")
        if completed is not None and completed < started:
            completed = started
        stages.append({"name": stage["name"], "started_at": started, "completed_at": completed})
    if row["status"] == "in_progress":
        current = next((s["name"] for s in stages if s["completed_at"] is None), stages[-1]["name"])
    else:
        current = FINISHED_STAGE[row["status"]]
    return {
        "application_number": row["application_number"],
        "account_number": row["account_number"],
        "business_type": row["business_type"],
        "customer_type": row["customer_type"],
        "submitted_at": submitted,
        "status": row["status"],
        "current_stage": current,
        "stages": stages,
        "manager": {"name": row["manager_name"], "phone": row["manager_phone"]},
    }


async def get_application(request: web.Request) -> web.Response:
    number = request.match_info["number"].strip().upper()
    row = None
    if _NUMBER_RE.fullmatch(number):
        row = request.app[DB].one("SELECT * FROM applications WHERE application_number = ?", (number,))
    if row is None:
        raise not_found(f"no application {number!r}")
    return json_response(application_json(row, request.app[CLOCK]()))


async def list_applications(request: web.Request) -> web.Response:
    account = (request.query.get("account_number") or "").strip()
    if not re.fullmatch(r"[0-9]{10}", account):
        raise bad_request("account_number must be 10 digits")
    now = request.app[CLOCK]()
    rows = request.app[DB].query(
        "SELECT * FROM applications WHERE account_number = ? ORDER BY submitted_offset_days DESC,"
        " application_number DESC", (account,))
    return json_response({"applications": [application_json(r, now) for r in rows]})


def create_app(db: Database, clock: Clock) -> web.Application:
    """The applications API (mounted at /applications)."""
    app = service_app(db, clock, "applications")
    app.router.add_get("/applications", list_applications)
    app.router.add_get("/applications/{number}", get_application)
    return app
