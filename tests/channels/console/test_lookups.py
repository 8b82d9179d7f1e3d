"""What the waiting list shows beside a hand-off: the assistant's side of the conversation from
Rasa's tracker API, open tickets and applications from the reference backends (over HTTP); and
an agent taking a conversation over from the console."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from backends import demo_accounts as demo
from integrations.tickets import NewTicket
from tests.channels.console.conftest import hand_off

CID = "wechat:o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


class FakeRasaTracker:
    """Rasa's ``GET /conversations/<id>/tracker`` (the events list, as Rasa 3.6 answers it) and
    ``POST .../tracker/events`` (the hand-off's pause/resume), recorded."""

    def __init__(self) -> None:
        self.trackers: dict[str, list[dict]] = {}
        self.appended: list[tuple[str, list]] = []

    async def tracker(self, request: web.Request) -> web.Response:
        sender = request.match_info["sender"]
        events = self.trackers.get(sender, [])
        return web.json_response({"sender_id": sender, "slots": {}, "latest_message": {},
                                  "paused": False, "events": events})

    async def append(self, request: web.Request) -> web.Response:
        self.appended.append((request.match_info["sender"], await request.json()))
        return web.json_response({"sender_id": request.match_info["sender"], "events": None})


@pytest.fixture
async def rasa_tracker() -> AsyncIterator[tuple[FakeRasaTracker, str]]:
    fake = FakeRasaTracker()
    app = web.Application()
    app.router.add_get("/conversations/{sender}/tracker", fake.tracker)
    app.router.add_post("/conversations/{sender}/tracker/events", fake.append)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_the_waiting_list_shows_the_assistant_turns_tickets_and_applications(
        make_gateway, users, make_agent, store, backends, rasa_tracker):
    fake, rasa_url = rasa_tracker
    fake.trackers[CID] = [
        {"event": "action", "name": "action_session_start", "timestamp": 1.0},
        {"event": "user", "text": "我家停电了", "timestamp": 2.0, "parse_data": {}},
        {"event": "bot", "text": "请提供您的户号。", "timestamp": 3.0},
        {"event": "slot", "name": "account_number", "value": demo.ENTERPRISE, "timestamp": 4.0},
        {"event": "user", "text": "转人工", "timestamp": 5.0},
    ]
    promised = (backends.clock.now + timedelta(hours=2)).isoformat()
    ticket = await backends.clients.tickets.create_ticket(NewTicket(
        kind="repair", category="no_power", description="整栋楼停电", severity="high",
        conversation_id=CID, promised_by=promised, account_number=demo.ENTERPRISE))
    gateway = await make_gateway(RASA_URL=rasa_url, TICKETS_API_URL=backends.url + "/tickets",
                                 APPLICATIONS_API_URL=backends.url + "/applications")
    await hand_off(store, CID, "general", account=demo.ENTERPRISE)
    agent = make_agent(gateway)
    await agent.login("wang")
    status, body = await agent.get("/console/api/conversations?state=waiting")
    assert status == 200
    [item] = body["conversations"]
    assert item["unavailable"] == []
    assert [(m["sender"], m["text"]) for m in item["assistant_messages"]] == [
        ("customer", "我家停电了"), ("bot", "请提供您的户号。"), ("customer", "转人工")]
    assert [(t["ticket_id"], t["kind"], t["status"]) for t in item["open_tickets"]] == [
        (ticket.ticket_id, "repair", "received")]
    assert [a["application_number"] for a in item["open_applications"]] == [demo.DEMO_CAPACITY_APPLICATION]
    assert item["account_masked"] == "******" + demo.ENTERPRISE[-4:]
    assert demo.ENTERPRISE not in str(body)


async def test_lookups_that_fail_are_named_and_the_list_still_answers(make_gateway, users, make_agent, store,
                                                                     dead_backends_url):
    gateway = await make_gateway(RASA_URL=dead_backends_url, TICKETS_API_URL=dead_backends_url,
                                 APPLICATIONS_API_URL=dead_backends_url, CONSOLE_LOOKUP_TIMEOUT_SECONDS="1")
    await hand_off(store, CID, "general")
    agent = make_agent(gateway)
    await agent.login("wang")
    status, body = await agent.get("/console/api/conversations")
    assert status == 200
    [item] = body["conversations"]
    assert sorted(item["unavailable"]) == ["assistant_messages", "open_applications", "open_tickets"]
    assert item["cid"] == CID and item["assistant_messages"] == []


async def test_an_agent_takes_a_conversation_over_from_the_console(make_gateway, users, make_agent, store,
                                                                  rasa_tracker):
    fake, rasa_url = rasa_tracker
    gateway = await make_gateway(RASA_URL=rasa_url)
    wang, li = make_agent(gateway), make_agent(gateway)
    await wang.login("wang")
    await li.login("li")
    path = "/console/api/conversations/web:CCCCCCCCCCCCCCCCCCCCCC/take_over"
    assert (await wang.post(path, {"queue": "vip"}))[0] == 403  # not wang's queue
    assert (await wang.post("/console/api/conversations/fax:123/take_over"))[1]["error"] == "bad_conversation"
    status, body = await wang.post(path)
    assert status == 200 and body["conversation"]["state"] == "active"
    assert (body["conversation"]["agent"], body["conversation"]["queue"]) == ("wang", "general")
    assert ("web:CCCCCCCCCCCCCCCCCCCCCC", [{"event": "pause"}]) in [
        (sender, [{"event": e["event"]} for e in events]) for sender, events in fake.appended]
    assert (await li.post(path, {"queue": "vip"}))[0] == 403  # an open hand-off of another queue
    assert (await store.get("web:CCCCCCCCCCCCCCCCCCCCCC"))["agent"] == "wang"
