"""Tickets API through the real HttpTicketsClient over loopback HTTP."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from backends import demo_accounts as demo
from integrations.tickets import NewTicket, TicketNotFound, TicketRejected


def conversation() -> str:
    return f"wechat:test-{uuid.uuid4().hex[:12]}"


def repair(conv: str, **overrides) -> NewTicket:
    fields = dict(kind="repair", category="no_power", description="家里整栋楼都停电了",
                  severity="high", conversation_id=conv, promised_by="2026-11-23T11:15:00+08:00",
                  contact_phone="13812345678", account_number=demo.RESIDENTIAL_TOU,
                  address="双龙大道1688号3栋", area="百家湖社区")
    fields.update(overrides)
    return NewTicket(**fields)


async def test_create_and_read_back_a_repair(backends):
    tickets, conv = backends.clients.tickets, conversation()
    created = await tickets.create_ticket(repair(conv))
    assert created.ticket_id.startswith("GD20261123") and len(created.ticket_id) == 16
    assert (created.kind, created.status, created.severity) == ("repair", "received", "high")
    assert created.created_at == backends.clock.now == created.updated_at
    assert created.promised_by - created.created_at == timedelta(minutes=45)
    assert created.account_number == demo.RESIDENTIAL_TOU and created.conversation_id == conv
    assert [(h.status, h.at) for h in created.history] == [("received", created.created_at)]
    assert await tickets.get_ticket(created.ticket_id) == created
    assert await tickets.get_ticket(created.ticket_id.lower()) == created


async def test_ids_count_up_per_kind_and_day(backends):
    tickets, conv = backends.clients.tickets, conversation()
    a = await tickets.create_ticket(repair(conv))
    b = await tickets.create_ticket(repair(conv, severity="urgent"))
    complaint = await tickets.create_ticket(repair(conv, kind="complaint", category="service_attitude",
                                                   description="营业厅工作人员态度差", severity="normal",
                                                   account_number=None, address=None, area=None))
    assert int(b.ticket_id[-6:]) == int(a.ticket_id[-6:]) + 1
    assert complaint.ticket_id.startswith("TS20261123")
    listed = await tickets.tickets_of(conv)
    assert {t.ticket_id for t in listed} == {a.ticket_id, b.ticket_id, complaint.ticket_id}
    assert await tickets.tickets_of(conversation()) == []


@pytest.mark.parametrize("overrides, message", [
    ({"description": ""}, "description"),
    ({"account_number": "12345"}, "account_number"),
    ({"contact_phone": "12345"}, "contact_phone"),
    ({"promised_by": "tomorrow"}, "promised_by"),
    ({"promised_by": "2026-11-23T11:15:00"}, "offset"),
    ({"account_number": None, "address": None, "area": None}, "account, an address or an area"),
])
async def test_invalid_tickets_are_rejected(backends, overrides, message):
    with pytest.raises(TicketRejected) as caught:
        await backends.clients.tickets.create_ticket(repair(conversation(), **overrides))
    assert caught.value.status == 400 and message in caught.value.backend_message


def test_new_ticket_checks_kind_and_severity():
    with pytest.raises(ValueError):
        repair("web:x", kind="praise")
    with pytest.raises(ValueError):
        repair("web:x", severity="whenever")


async def test_unknown_ticket(backends):
    with pytest.raises(TicketNotFound):
        await backends.clients.tickets.get_ticket("GD20260101999999")
