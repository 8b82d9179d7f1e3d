"""A campaign's report, from its counters (the same cost for any audience size).

:func:`campaign_report` is the JSON of ``report CAMPAIGN_ID --json`` and of
``GET /admin/campaigns/<id>``; :func:`render_report` is the text the CLI prints:

- ``audience``: customers in the campaign; ``open``: not finished yet (being sent or held);
- per channel: ``sent`` (handed to the channel; the WeChat→SMS fallbacks are counted on
  ``sms`` and again under ``fallback``), ``delivered`` / ``undelivered`` (delivery reports so
  far), ``failed`` and ``skipped`` by reason; channel ``none`` holds the customers skipped before
  a channel was chosen (no conversation at all, or only on channels not configured here);
- ``held`` by reason: waiting now (quiet_hours, throttled, retry), sent when due;
- ``first_failures``: the first failed or undelivered recipients, masked.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from channels.broadcast.campaigns import Campaigns
from channels.keys import GATEWAY_APP_KEY, REDIS_KEY


def _time(raw: str | None) -> str | None:
    if not raw:
        return None
    return datetime.fromtimestamp(float(raw), timezone.utc).isoformat(timespec="seconds")


async def campaign_report(campaigns: Campaigns, campaign_id: str) -> dict[str, Any] | None:
    """The report of ``campaign_id`` as JSON-ready data, None when there is no such campaign."""
    meta = await campaigns.meta(campaign_id)
    if meta is None:
        return None
    counters = await campaigns.counters(campaign_id)
    channels: dict[str, dict[str, Any]] = {}
    held: dict[str, int] = {}
    totals = {"sent": 0, "delivered": 0, "undelivered": 0, "failed": 0, "skipped": 0}
    for name, value in sorted(counters.values.items()):
        if name.startswith("held:"):
            if value:
                held[name[5:]] = value
            continue
        if not name.startswith("c:"):
            continue
        _, channel, rest = name.split(":", 2)
        entry = channels.setdefault(channel, {"sent": 0, "fallback": 0, "delivered": 0,
                                              "undelivered": 0, "failed": {}, "skipped": {}})
        state, _, reason = rest.partition(":")
        if state in ("failed", "skipped"):
            entry[state][reason] = entry[state].get(reason, 0) + value
            totals[state] += value
        elif state == "sent" and reason:
            entry["fallback" if reason == "fallback" else f"sent_{reason}"] = value
        elif state in ("sent", "delivered", "undelivered"):
            entry[state] += value
            totals[state] += value
    try:
        subject = json.loads(meta.get("subject") or "{}")
    except ValueError:
        subject = {}
    return {
        "campaign_id": campaign_id,
        "kind": meta.get("kind"),
        "stage": meta.get("stage"),
        "notice_kind": meta.get("notice_kind"),
        "urgent": meta.get("urgent") == "1",
        "title": meta.get("title"),
        "subject": subject,
        "state": meta.get("state"),
        "audience_complete": meta.get("planned") == "1",
        "created_at": _time(meta.get("created_at")),
        "finished_at": _time(meta.get("finished_at")),
        "audience": counters.get("audience"),
        "open": counters.get("open"),
        "held": held,
        "totals": totals,
        "channels": channels,
        "first_failures": await campaigns.failures(campaign_id),
    }


async def campaign_list(campaigns: Campaigns, limit: int = 200) -> list[dict[str, Any]]:
    """The newest campaigns: id, kind, title, state, audience, open, created_at."""
    out = []
    for campaign_id in await campaigns.ids(limit):
        meta = await campaigns.meta(campaign_id)
        if meta is None:
            continue
        counters = await campaigns.counters(campaign_id)
        out.append({"campaign_id": campaign_id, "kind": meta.get("kind"),
                    "stage": meta.get("stage"), "title": meta.get("title"),
                    "state": meta.get("state"), "audience": counters.get("audience"),
                    "open": counters.get("open"), "created_at": _time(meta.get("created_at"))})
    return out


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())) or "-"


def render_report(report: dict[str, Any]) -> str:
    """The report as the text the CLI prints."""
    lines = [f"campaign {report['campaign_id']}  {report.get('title') or ''}".rstrip(),
             f"  kind {report['kind']} / {report['stage']}, notice {report['notice_kind']}"
             f"{' (urgent)' if report['urgent'] else ''}; state {report['state']}"
             f"{'' if report['audience_complete'] else ' (audience still being read)'}",
             f"  audience {report['audience']}, open {report['open']}"
             + (f", held: {_reasons(report['held'])}" if report["held"] else "")]
    lines.append(f"  {'channel':<8} {'sent':>8} {'delivered':>10} {'undeliv.':>9} "
                 f"{'failed':>7} {'skipped':>8}")
    for channel, c in sorted(report["channels"].items()):
        lines.append(f"  {channel:<8} {c['sent']:>8} {c['delivered']:>10} {c['undelivered']:>9} "
                     f"{sum(c['failed'].values()):>7} {sum(c['skipped'].values()):>8}")
        if c["fallback"]:
            lines.append(f"    of which WeChat→SMS fallback: {c['fallback']}")
        if c["failed"]:
            lines.append(f"    failed:  {_reasons(c['failed'])}")
        if c["skipped"]:
            lines.append(f"    skipped: {_reasons(c['skipped'])}")
    t = report["totals"]
    lines.append(f"  {'total':<8} {t['sent']:>8} {t['delivered']:>10} {t['undelivered']:>9} "
                 f"{t['failed']:>7} {t['skipped']:>8}")
    if report["first_failures"]:
        lines.append("  first failures:")
        lines += [f"    {line}" for line in report["first_failures"]]
    return "\n".join(lines)


async def campaigns_view(request: web.Request) -> web.Response:
    """``GET /admin/campaigns`` on the admin port: ``{"campaigns": [...]}``, newest first."""
    campaigns = Campaigns(request.app[GATEWAY_APP_KEY][REDIS_KEY])
    return web.json_response({"campaigns": await campaign_list(campaigns)}, dumps=_dumps)


async def campaign_view(request: web.Request) -> web.Response:
    """``GET /admin/campaigns/<id>`` on the admin port: the report (404 when unknown)."""
    campaigns = Campaigns(request.app[GATEWAY_APP_KEY][REDIS_KEY])
    report = await campaign_report(campaigns, request.match_info["campaign_id"])
    if report is None:
        return web.json_response({"error": "no such campaign"}, status=404)
    return web.json_response(report, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)
