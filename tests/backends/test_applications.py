"""Applications (业扩) API through the real HttpApplicationsClient over loopback HTTP."""
from __future__ import annotations

from datetime import timedelta

import pytest

from backends import demo_accounts as demo
from integrations.applications import ApplicationNotFound, ApplicationRejected

BUSINESS = {"新装", "增容", "过户", "光伏并网", "销户"}


async def test_demo_capacity_increase_is_stuck_and_overdue(backends):
    app = await backends.clients.applications.get_application(demo.DEMO_CAPACITY_APPLICATION)
    assert (app.account_number, app.business_type, app.customer_type, app.status) == (
        demo.ENTERPRISE, "增容", "enterprise", "in_progress")
    today = backends.clock.now.date()
    assert app.submitted_at.date() == today - timedelta(days=12)
    assert [s.name for s in app.stages] == ["受理", "现场勘查", "供电方案答复"]
    assert app.current_stage == "供电方案答复" and app.stages[-1].completed_at is None
    assert app.manager is not None and app.manager.name and len(app.manager.phone) == 11


async def test_demo_new_connection_belongs_to_an_account_billing_does_not_know_yet(backends):
    app = await backends.clients.applications.get_application(demo.DEMO_NEW_CONNECTION_APPLICATION)
    assert (app.business_type, app.current_stage) == ("新装", "现场勘查")
    assert app.submitted_at.date() == backends.clock.now.date() - timedelta(days=8)
    listed = await backends.clients.applications.applications_of(demo.NEW_CONNECTION_ACCOUNT)
    assert [a.application_number for a in listed] == [demo.DEMO_NEW_CONNECTION_APPLICATION]


async def test_applications_of_an_account(backends):
    apps = await backends.clients.applications.applications_of(demo.RESIDENTIAL_TOU)
    assert [a.application_number for a in apps] == [demo.DEMO_PV_APPLICATION]
    assert apps[0].business_type == "光伏并网" and apps[0].current_stage == "接入方案答复"
    assert await backends.clients.applications.applications_of("3999999999") == []
    with pytest.raises(ApplicationRejected):
        await backends.clients.applications.applications_of("123")


async def test_every_application_is_coherent(backends):
    """Stages chain in time, nothing is in the future, finished ones have every stage closed."""
    import sqlite3

    with sqlite3.connect(backends.db_path) as db:
        numbers = [r[0] for r in db.execute("SELECT application_number FROM applications")]
    assert len(numbers) >= 30
    now = backends.clock.now
    statuses, overdue = set(), 0
    for number in numbers:
        app = await backends.clients.applications.get_application(number)
        statuses.add(app.status)
        assert app.business_type in BUSINESS and app.stages and app.stages[0].name == "受理"
        assert app.submitted_at <= now
        assert app.stages[0].started_at == app.submitted_at
        for earlier, later in zip(app.stages, app.stages[1:]):
            assert earlier.completed_at is not None and later.started_at == earlier.completed_at
        for stage in app.stages:
            assert stage.started_at <= now
            assert stage.completed_at is None or stage.started_at <= stage.completed_at <= now
        if app.status == "in_progress":
            assert app.stages[-1].completed_at is None and app.current_stage == app.stages[-1].name
            overdue += (now - app.submitted_at) > timedelta(days=7)
        else:
            assert all(s.completed_at for s in app.stages)
            assert app.current_stage == {"completed": "已办结", "cancelled": "已撤销"}[app.status]
    assert statuses == {"in_progress", "completed", "cancelled"}
    assert overdue >= 3


async def test_unknown_application(backends):
    for number in ("YK2099999999", "nonsense"):
        with pytest.raises(ApplicationNotFound):
            await backends.clients.applications.get_application(number)
