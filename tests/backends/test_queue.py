"""Hall queue API through the real HttpQueueClient over loopback HTTP."""
from __future__ import annotations

import math
import uuid
from datetime import timedelta

import pytest

from backends import demo_accounts as demo
from integrations.errors import BackendRejected
from integrations.queue import QueueNotFound, QueueRejected

SPEC_CODES = ["payment", "transfer", "new_connection", "capacity_increase", "account_closure",
              "pv_grid", "rename", "invoice", "tariff_consult", "fault_repair"]


def holder() -> str:
    return f"web:test-{uuid.uuid4().hex[:12]}"


async def test_business_types(backends):
    types = await backends.clients.queue.list_business_types()
    assert [t.code for t in types] == SPEC_CODES
    assert [t.name for t in types] == ["缴费", "过户", "新装", "增容", "销户", "光伏并网", "更名",
                                       "发票打印", "电价咨询", "故障报修"]
    closure = next(t for t in types if t.code == "account_closure")
    assert not closure.online and closure.online_channels == () and closure.hall_only_reason
    payment = next(t for t in types if t.code == "payment")
    assert payment.online and "网上国网App" in payment.online_channels and payment.hall_only_reason is None


async def test_halls_and_area_filter(backends):
    queue = backends.clients.queue
    halls = await queue.list_halls()
    assert 5 <= len(halls) <= 10
    assert halls[0].hall_id == demo.FULL_SERVICE_HALL and halls[0].name == "江宁区东山营业厅"
    assert set(halls[0].business_types) == set(SPEC_CODES)
    assert all(h.open_now for h in halls)  # Monday 10:30
    assert all("营业厅" in h.name and h.opening_hours and h.address for h in halls)

    async def names(area):
        return [h.name for h in await queue.list_halls(area=area)]

    assert await names("东山") == ["江宁区东山营业厅"]
    assert await names("东山营业厅") == ["江宁区东山营业厅"]
    assert await names("百家湖") == ["江宁区百家湖营业厅"]
    assert await names("翠屏社区") == ["江宁区秣陵营业厅"]
    assert await names("江宁营业厅") == ["江宁区江宁营业厅"]
    jiangning = await names("江宁区")
    assert len(jiangning) == 9 and all(n.startswith("江宁区") for n in jiangning)
    assert await names("火星") == []


async def test_queue_lines(backends):
    hall_queue = await backends.clients.queue.get_queue(demo.FULL_SERVICE_HALL)
    assert hall_queue.open_now and hall_queue.name == "江宁区东山营业厅"
    assert [line.business_type for line in hall_queue.lines] == SPEC_CODES
    for line in hall_queue.lines:
        assert line.waiting >= 0 and line.now_serving and line.avg_service_minutes > 0
        windows = 2 if line.business_type == "payment" else 1
        assert line.estimated_wait_minutes == math.ceil(line.waiting * line.avg_service_minutes / windows)
    with pytest.raises(QueueNotFound):
        await backends.clients.queue.get_queue("H99")


async def test_take_a_number_and_follow_it_until_served(backends):
    queue, me = backends.clients.queue, holder()
    hall = demo.FULL_SERVICE_HALL
    before = {q.business_type: q for q in (await queue.get_queue(hall)).lines}["transfer"]
    issued = await queue.take_ticket(hall, "transfer", me)
    assert issued.ticket_number.startswith("B") and issued.hall_id == hall
    assert issued.position == before.waiting + 1
    assert issued.estimated_wait_minutes == issued.position * before.avg_service_minutes
    assert issued.issued_at == backends.clock.now
    after = {q.business_type: q for q in (await queue.get_queue(hall)).lines}["transfer"]
    assert after.waiting == before.waiting + 1

    again = await queue.take_ticket(hall, "transfer", me)  # a double tap gets the same number
    assert again.ticket_number == issued.ticket_number

    mine = await queue.tickets_of(me)
    assert [(t.ticket_number, t.status, t.position) for t in mine] == [
        (issued.ticket_number, "waiting", issued.position)]
    assert await queue.tickets_of(holder()) == []

    for expected_position in range(issued.position - 1, 0, -1):
        await queue.http.post_json(f"/halls/{hall}/advance", {})
        state = await queue.get_ticket(hall, issued.ticket_number)
        assert (state.status, state.position) == ("waiting", expected_position)
    await queue.http.post_json(f"/halls/{hall}/advance", {})
    assert (await queue.get_ticket(hall, issued.ticket_number)).status == "serving"
    line = {q.business_type: q for q in (await queue.get_queue(hall)).lines}["transfer"]
    assert line.now_serving == issued.ticket_number
    await queue.http.post_json(f"/halls/{hall}/advance", {})
    done = await queue.get_ticket(hall, issued.ticket_number.lower())
    assert (done.status, done.position, done.estimated_wait_minutes) == ("done", 0, 0)
    # The counter is free now: the next number is called at once.
    walk_in = await queue.take_ticket(hall, "transfer", holder())
    assert (walk_in.position, walk_in.estimated_wait_minutes) == (0, 0)
    assert (await queue.get_ticket(hall, walk_in.ticket_number)).status == "serving"


async def test_numbers_from_the_halls_own_machine_are_known(backends):
    queue = backends.clients.queue
    assert (await queue.get_ticket(demo.FULL_SERVICE_HALL, "A001")).status == "done"
    for number in ("A999", "Z001", "B0x1"):
        with pytest.raises(QueueNotFound):
            await queue.get_ticket(demo.FULL_SERVICE_HALL, number)


async def test_closed_hall_refuses_numbers_and_waiting_numbers_expire(backends):
    queue, me = backends.clients.queue, holder()
    taken = await queue.take_ticket("H03", "payment", me)
    backends.clock.now = backends.clock.now.replace(hour=20)  # Monday evening
    with pytest.raises(QueueRejected) as caught:
        await queue.take_ticket("H03", "payment", me)
    assert isinstance(caught.value, BackendRejected)
    assert (caught.value.status, caught.value.code) == (409, "hall_closed")
    closed = await queue.get_queue("H03")
    assert not closed.open_now and all(q.waiting == 0 and q.now_serving is None for q in closed.lines)
    assert (await queue.get_ticket("H03", taken.ticket_number)).status == "expired"
    # The always-open hall still hands out numbers.
    late = await queue.take_ticket(demo.ALWAYS_OPEN_HALL, "payment", me)
    assert late.position >= 1


async def test_weekend_hours(backends):
    backends.clock.now = backends.clock.now + timedelta(days=6)  # Sunday 10:30
    halls = {h.hall_id: h for h in await backends.clients.queue.list_halls()}
    assert halls["H01"].open_now and not halls["H03"].open_now
    assert "周六、周日及法定节假日休息" in halls["H03"].opening_hours


async def test_statutory_holidays_use_rest_day_hours(backends):
    backends.clock.now = backends.clock.now.replace(month=10, day=1)  # 国庆, a Thursday
    halls = {h.hall_id: h for h in await backends.clients.queue.list_halls()}
    assert halls["H01"].open_now and not halls["H03"].open_now


async def test_a_holder_cannot_take_numbers_without_limit(backends):
    queue, me = backends.clients.queue, holder()
    codes = ["payment", "transfer", "new_connection", "capacity_increase", "account_closure",
             "pv_grid", "rename", "invoice", "tariff_consult", "fault_repair"]
    for code in codes:
        await queue.take_ticket(demo.FULL_SERVICE_HALL, code, me)
    with pytest.raises(QueueRejected) as caught:
        await queue.take_ticket("H02", "payment", me)
    assert (caught.value.status, caught.value.code) == (429, "too_many_tickets")


async def test_unsupported_business_type_and_bad_body(backends):
    queue = backends.clients.queue
    with pytest.raises(QueueRejected) as caught:
        await queue.take_ticket(demo.ALWAYS_OPEN_HALL, "transfer", holder())
    assert caught.value.code == "unsupported_business_type"
    with pytest.raises(QueueRejected) as caught:
        await queue.http.post_json(f"/halls/{demo.ALWAYS_OPEN_HALL}/tickets", {"business_type": "payment"})
    assert caught.value.code == "bad_request"
    with pytest.raises(QueueNotFound):
        await queue.take_ticket("H99", "payment", holder())


async def test_the_day_is_seeded_deterministically(backends):
    first = await backends.clients.queue.get_queue("H05")
    backends.clock.now += timedelta(days=1)
    other_day = await backends.clients.queue.get_queue("H05")
    backends.clock.now -= timedelta(days=1)
    again = await backends.clients.queue.get_queue("H05")
    assert [(q.waiting, q.now_serving) for q in first.lines] == [(q.waiting, q.now_serving) for q in again.lines]
    assert [(q.waiting, q.now_serving) for q in first.lines] != [
        (q.waiting, q.now_serving) for q in other_day.lines]


async def test_simulated_queues_move_while_open_and_not_while_closed(backends):
    import random

    from backends.db import Database
    from backends.simulation import step

    queue = backends.clients.queue
    db = Database(backends.db_path)
    try:
        before = await queue.get_queue("H04")
        step(db, backends.clock, 30 * 60, random.Random(7))  # half an hour of service
        after = await queue.get_queue("H04")
        assert [q.now_serving for q in after.lines] != [q.now_serving for q in before.lines]
        backends.clock.now = backends.clock.now.replace(hour=21)
        closed_before = await queue.http.get_json("/halls/H04/queue")
        step(db, backends.clock, 30 * 60, random.Random(7))
        assert await queue.http.get_json("/halls/H04/queue") == closed_before
    finally:
        db.close()


async def test_simulation_runs_in_the_app(tmp_path, seeded_db):
    import asyncio
    import shutil

    from aiohttp import web

    from backends.app import BackendsAppConfig, create_app
    from tests.backends.server import SettableClock

    path = tmp_path / "sim.sqlite3"
    shutil.copy(seeded_db, path)
    clock = SettableClock()
    from backends.db import Database
    from backends.queue import _lines

    db = Database(path)
    db.create_schema()
    for hall in db.query("SELECT * FROM halls"):
        _lines(db, hall, clock())  # today's lines exist before the simulation starts
    total = "SELECT SUM(served + issued) FROM queue_lines WHERE day = ?"
    day = clock().date().isoformat()
    first = db.query(total, (day,))[0][0]
    assert first
    runner = web.AppRunner(create_app(BackendsAppConfig(path, clock, simulate_queues_every_s=0.05)))
    await runner.setup()
    try:
        for _ in range(100):
            clock.now += timedelta(minutes=2)  # two minutes of service and arrivals per tick
            await asyncio.sleep(0.05)
            if db.query(total, (day,))[0][0] != first:
                break
        else:
            raise AssertionError("the queues did not move")
    finally:
        await runner.cleanup()
        db.close()
