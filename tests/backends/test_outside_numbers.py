"""Numbers from requests are ASCII digits only: ``"²".isdigit()`` is true (and ``int`` refuses
it), ``"３"`` and ``"٣"`` are digits to ``\\d`` and ``int``; all of them are a 400 or a 404, never a
500 or a silent conversion. Real reference backends over loopback HTTP."""
from __future__ import annotations

import aiohttp
import pytest

ACCOUNT = "3201234567"


async def _status(method: str, url: str, **kwargs) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as response:
            await response.read()
            return response.status


@pytest.mark.parametrize("limit, status", [("3", 200), ("²", 400), ("３", 400), ("٣", 400),
                                           ("", 400), ("-1", 400), ("13", 400)])
async def test_bill_limit(backends, limit, status):
    url = f"{backends.url}/billing/accounts/{ACCOUNT}/bills"
    assert await _status("GET", url, params={"limit": limit}) == status


@pytest.mark.parametrize("number", ["A²", "A³³", "A１", "A٣"])
async def test_hall_ticket_numbers_with_other_digits_are_not_found(backends, number):
    assert await _status("GET", f"{backends.url}/queue/halls/H01/tickets/{number}") == 404


@pytest.mark.parametrize("account", ["３２０１２３４５６７", "٣٢٠١٢٣٤٥٦٧"])
async def test_application_lists_need_an_ascii_account_number(backends, account):
    url = f"{backends.url}/applications/applications"
    assert await _status("GET", url, params={"account_number": account}) == 400
    assert await _status("GET", url, params={"account_number": ACCOUNT}) == 200


@pytest.mark.parametrize("field, value", [("contact_phone", "１３８１２３４５６７８"),
                                          ("account_number", "３２０１２３４５６７")])
async def test_tickets_refuse_numbers_in_other_digits(backends, field, value):
    body = {"kind": "complaint", "severity": "normal", "category": "服务态度",
            "description": "测试", "conversation_id": "web:digits-test",
            "promised_by": "2026-11-24T10:30:00+08:00", field: value}
    assert await _status("POST", f"{backends.url}/tickets/tickets", json=body) == 400
    body[field] = "13812345678" if field == "contact_phone" else ACCOUNT
    assert await _status("POST", f"{backends.url}/tickets/tickets", json=body) in (200, 201)
