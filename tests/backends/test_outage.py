"""Outage API through the real HttpOutageClient over loopback HTTP."""
from __future__ import annotations

from datetime import timedelta

import pytest

from backends import demo_accounts as demo
from backends.places import COMMUNITIES
from integrations.outage import OutageNotFound, OutageRejected


async def test_areas_are_the_citys_communities(backends):
    areas = await backends.clients.outage.list_areas()
    assert [(a.district, a.street, a.community) for a in areas] == [
        (c.district, c.street, c.community) for c in COMMUNITIES]
    assert len({a.district for a in areas}) >= 5


async def test_ongoing_fault_at_the_overdue_demo_account(backends):
    outage = backends.clients.outage
    by_account = await outage.find_outages(account_number=demo.OVERDUE)
    assert [(o.kind, o.status, o.community) for o in by_account] == [("fault", "ongoing", "翠屏社区")]
    now = backends.clock.now
    fault = by_account[0]
    assert fault.start_time <= now < fault.end_time
    assert fault.announced_at >= fault.start_time
    for area in ("翠屏社区", "翠屏", "秣陵街道翠屏社区", "胜太路"):
        found = await outage.find_outages(area=area, status="ongoing")
        assert fault.outage_id in [o.outage_id for o in found], area


async def test_planned_outage_tomorrow_at_bai_jia_hu(backends):
    outage = backends.clients.outage
    found = await outage.find_outages(account_number=demo.RESIDENTIAL_TOU)
    assert [(o.kind, o.status) for o in found] == [("planned", "scheduled")]
    planned = found[0]
    tomorrow = backends.clock.now.date() + timedelta(days=1)
    assert planned.start_time.date() == tomorrow and planned.end_time > planned.start_time
    assert planned.start_time - planned.announced_at >= timedelta(days=7)
    assert "百家湖社区" in planned.affected_area and planned.reason
    # Suffix-tolerant: 百家湖 / 百家湖社区 / 东山街道百家湖 all find it.
    for area in ("百家湖", "百家湖社区", "江宁区东山街道百家湖社区", "东山街道百家湖"):
        assert planned.outage_id in [o.outage_id for o in await outage.find_outages(area=area)]


async def test_status_filters(backends):
    outage = backends.clients.outage
    now = backends.clock.now
    everything = await outage.find_outages(status="all")
    active = await outage.find_outages()
    planned = await outage.find_outages(status="planned")
    ongoing = await outage.find_outages(status="ongoing")
    assert {o.status for o in everything} == {"scheduled", "ongoing", "restored"}
    assert {o.kind for o in everything} == {"planned", "fault"}
    assert all(o.status == "ongoing" for o in ongoing) and len(ongoing) >= 2
    assert all(o.status == "scheduled" for o in planned)
    assert any(o.start_time > now + timedelta(days=7) for o in planned)
    assert {o.outage_id for o in active} == {o.outage_id for o in ongoing} | {
        o.outage_id for o in planned if o.start_time <= now + timedelta(days=7)}
    # ongoing first, then by start time
    ranks = [0 if o.status == "ongoing" else 1 for o in active]
    assert ranks == sorted(ranks)
    restored = [o for o in everything if o.status == "restored"]
    assert restored and all(o.end_time <= now for o in restored if o.kind == "planned")


async def test_outages_stay_around_now_as_time_passes(backends):
    backends.clock.now += timedelta(days=40, hours=5)
    active = await backends.clients.outage.find_outages()
    assert any(o.status == "ongoing" for o in active)
    assert any(o.status == "scheduled" for o in active)


async def test_a_district_covers_its_communities_and_unknown_areas_have_none(backends):
    outage = backends.clients.outage
    district = await outage.find_outages(area="江宁区", status="all")
    assert district and all(o.district == "江宁区" for o in district)
    assert await outage.find_outages(area="火星基地", status="all") == []


async def test_bad_status_and_unknown_account(backends):
    with pytest.raises(OutageRejected):
        await backends.clients.outage.http.get_json("/outages", {"status": "soon"})
    with pytest.raises(ValueError):
        await backends.clients.outage.find_outages(status="soon")
    with pytest.raises(OutageNotFound):
        await backends.clients.outage.find_outages(account_number="3999999999")


async def test_one_outage_by_id_as_of_now(backends):
    outage = backends.clients.outage
    everything = await outage.find_outages(status="all")
    for wanted in everything:
        assert await outage.get_outage(wanted.outage_id) == wanted
    with pytest.raises(OutageNotFound):
        await outage.get_outage("NO-SUCH-OUTAGE")
    with pytest.raises(OutageNotFound):
        await outage.get_outage("../areas")
